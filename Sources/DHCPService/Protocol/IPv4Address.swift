/// An IPv4 address held as a 32-bit number in host order, so `10.0.0.1` is `0x0A00_0001`
/// and ordering, arithmetic and masking work on the number directly.
public struct IPv4Address: Hashable, Sendable, Comparable, Codable, CustomStringConvertible, LosslessStringConvertible {
    public let rawValue: UInt32

    public static let zero = IPv4Address(rawValue: 0)
    public static let broadcast = IPv4Address(rawValue: .max)

    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    public init(octets: (UInt8, UInt8, UInt8, UInt8)) {
        rawValue = UInt32(octets.0) << 24 | UInt32(octets.1) << 16 | UInt32(octets.2) << 8 | UInt32(octets.3)
    }

    /// Reads four bytes in network order; nil unless there are exactly four.
    init?(networkBytes bytes: some Collection<UInt8>) {
        guard bytes.count == 4 else { return nil }
        rawValue = bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// Parses a strict dotted quad: exactly four decimal parts in 0...255, ASCII digits only.
    /// A part may start with "0" only if it is "0": `inet_aton` reads "010" as octal 8, so
    /// accepting leading zeros would make "010.0.0.1" mean different hosts to different tools.
    public init?(_ description: String) {
        var value: UInt32 = 0
        var completedParts = 0
        var part: UInt32 = 0
        var partDigits = 0
        for byte in description.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                // A digit after a lone leading "0" means the part has a leading zero.
                if partDigits > 0 && part == 0 { return nil }
                part = part * 10 + UInt32(byte - UInt8(ascii: "0"))
                partDigits += 1
                guard part <= 255 else { return nil }
            case UInt8(ascii: "."):
                guard partDigits > 0, completedParts < 3 else { return nil }
                value = value << 8 | part
                completedParts += 1
                part = 0
                partDigits = 0
            default:
                return nil
            }
        }
        guard partDigits > 0, completedParts == 3 else { return nil }
        rawValue = value << 8 | part
    }

    /// The four bytes in network order (most significant first).
    public var octets: [UInt8] {
        [
            UInt8(truncatingIfNeeded: rawValue >> 24), UInt8(truncatingIfNeeded: rawValue >> 16),
            UInt8(truncatingIfNeeded: rawValue >> 8), UInt8(truncatingIfNeeded: rawValue),
        ]
    }

    public var description: String {
        octets.map(String.init).joined(separator: ".")
    }

    /// The address `distance` places away, or nil when that falls outside 0.0.0.0...255.255.255.255.
    public func advanced(by distance: Int) -> IPv4Address? {
        let (sum, overflow) = Int64(rawValue).addingReportingOverflow(Int64(distance))
        guard !overflow, let value = UInt32(exactly: sum) else { return nil }
        return IPv4Address(rawValue: value)
    }

    /// Whether this address and `network` agree on every bit the mask selects.
    public func isInSubnet(_ network: IPv4Address, mask: IPv4Address) -> Bool {
        rawValue & mask.rawValue == network.rawValue & mask.rawValue
    }

    public static func < (lhs: IPv4Address, rhs: IPv4Address) -> Bool {
        lhs.rawValue < rhs.rawValue
    }

    // Coded as the dotted-quad string, the form RackHD's JSON messages carry.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let address = IPv4Address(text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "Not a dotted-quad IPv4 address: \(text)")
        }
        self = address
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
