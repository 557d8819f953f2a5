/// The value of option 53, which says what a DHCP packet means (RFC 2132 §9.6).
public enum DHCPMessageType: UInt8, Sendable, CaseIterable {
    case discover = 1
    case offer = 2
    case request = 3
    case decline = 4
    case ack = 5
    case nak = 6
    case release = 7
    case inform = 8
}

/// A DHCP option code (RFC 2132). A struct rather than an enum because any of the 256 codes
/// may arrive on the wire and must survive a parse/serialize round trip unchanged.
public struct DHCPOptionCode: RawRepresentable, Hashable, Sendable, ExpressibleByIntegerLiteral {
    public let rawValue: UInt8

    public init(rawValue: UInt8) {
        self.rawValue = rawValue
    }

    public init(_ rawValue: UInt8) {
        self.rawValue = rawValue
    }

    public init(integerLiteral value: UInt8) {
        rawValue = value
    }

    /// Filler between options; carries no length byte.
    public static let pad = DHCPOptionCode(0)
    public static let subnetMask = DHCPOptionCode(1)
    public static let router = DHCPOptionCode(3)
    public static let domainNameServer = DHCPOptionCode(6)
    public static let hostName = DHCPOptionCode(12)
    public static let domainName = DHCPOptionCode(15)
    public static let broadcastAddress = DHCPOptionCode(28)
    public static let requestedIPAddress = DHCPOptionCode(50)
    public static let leaseTime = DHCPOptionCode(51)
    /// Says the `file` and/or `sname` header fields hold more options (RFC 2132 §9.3).
    public static let optionOverload = DHCPOptionCode(52)
    public static let messageType = DHCPOptionCode(53)
    public static let serverIdentifier = DHCPOptionCode(54)
    public static let parameterRequestList = DHCPOptionCode(55)
    public static let message = DHCPOptionCode(56)
    public static let maximumMessageSize = DHCPOptionCode(57)
    public static let renewalTime = DHCPOptionCode(58)
    public static let rebindingTime = DHCPOptionCode(59)
    public static let vendorClassIdentifier = DHCPOptionCode(60)
    public static let clientIdentifier = DHCPOptionCode(61)
    public static let tftpServerName = DHCPOptionCode(66)
    public static let bootfileName = DHCPOptionCode(67)
    public static let userClass = DHCPOptionCode(77)
    /// Client system architecture (RFC 4578), e.g. 0 for BIOS and 7 for x86-64 UEFI.
    public static let clientArchitecture = DHCPOptionCode(93)
    /// Marks the end of the options; carries no length byte.
    public static let end = DHCPOptionCode(255)

    /// Codes that structure the wire format rather than carry data. The codec writes and consumes
    /// them itself, so they never appear in `DHCPPacket.options`.
    static let framing: Set<DHCPOptionCode> = [.pad, .end, .optionOverload]
}
