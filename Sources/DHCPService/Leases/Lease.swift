import Foundation

/// The address plan the server hands out from.
public struct LeasePool: Sendable, Equatable {
    /// First and last address the server may hand out (inclusive).
    public var first: IPv4Address
    public var last: IPv4Address
    public var subnetMask: IPv4Address
    /// The server's own address on the provisioning network (DHCP option 54).
    public var serverAddress: IPv4Address

    public init(first: IPv4Address, last: IPv4Address, subnetMask: IPv4Address, serverAddress: IPv4Address) {
        self.first = first
        self.last = last
        self.subnetMask = subnetMask
        self.serverAddress = serverAddress
    }

    public func contains(_ address: IPv4Address) -> Bool {
        first <= address && address <= last
    }

    /// Whether the pool is usable: ordered, inside one subnet with the server.
    public func validate() throws(DHCPConfigurationError) {
        guard first <= last else { throw DHCPConfigurationError("the pool's first address \(first) is after its last \(last)") }
        let network = IPv4Address(rawValue: serverAddress.rawValue & subnetMask.rawValue)
        guard first.isInSubnet(network, mask: subnetMask), last.isInSubnet(network, mask: subnetMask) else {
            throw DHCPConfigurationError("the pool \(first)-\(last) is not in the server's subnet \(network)/\(subnetMask)")
        }
    }

    var size: UInt32 { last.rawValue - first.rawValue + 1 }
}

public struct DHCPConfigurationError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One client's address: offered (reserved for a short while after an OFFER) or bound (after an ACK).
public struct Lease: Sendable, Equatable {
    public enum State: String, Sendable, Codable {
        case offered
        case bound
    }

    public var mac: MACAddress
    public var ip: IPv4Address
    public var state: State
    public var hostname: String?
    /// When the lease was bound (nil while only offered).
    public var boundAt: Date?
    /// Offer reservation or lease expiry.
    public var expiresAt: Date
    /// The lease time granted, in seconds (0 while only offered).
    public var leaseSeconds: UInt32

    public init(
        mac: MACAddress, ip: IPv4Address, state: State, hostname: String? = nil, boundAt: Date? = nil, expiresAt: Date, leaseSeconds: UInt32
    ) {
        self.mac = mac
        self.ip = ip
        self.state = state
        self.hostname = hostname
        self.boundAt = boundAt
        self.expiresAt = expiresAt
        self.leaseSeconds = leaseSeconds
    }

    public func isLive(at now: Date) -> Bool { expiresAt > now }

    /// The node id events are published under: the MAC in lowercase hex without separators,
    /// stable for a machine and safe as a routing-key word.
    public var nodeID: String { mac.compactHex }
}

/// A lease in RackHD's `peekLeaseTable` shape (times in epoch milliseconds), with RackBus's
/// additions (`state`, `hostname`, `nodeId`).
public struct LeaseRecord: Codable, Sendable, Equatable {
    public var mac: String
    public var ipAddress: String
    public var hostname: String?
    public var nodeId: String
    public var state: String
    public var reservationTimer: Int
    public var reservationExpiresAt: Int64?
    public var renewalTimer: Int
    public var rebindingTimer: Int
    public var expirationTimer: Int
    public var renewalExpiresAt: Int64?
    public var rebindExpiresAt: Int64?
    public var leaseExpiresAt: Int64?
    public var boundFlag: Bool
    public var reservedFlag: Bool

    public init(_ lease: Lease, offerHoldSeconds: Int) {
        let expires = Int64((lease.expiresAt.timeIntervalSince1970 * 1000).rounded())
        let seconds = Int(lease.leaseSeconds)
        let bound = lease.state == .bound
        let boundAt = lease.boundAt.map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) }
        mac = lease.mac.description
        ipAddress = lease.ip.description
        hostname = lease.hostname
        nodeId = lease.nodeID
        state = lease.state.rawValue
        reservationTimer = offerHoldSeconds
        reservationExpiresAt = bound ? nil : expires
        renewalTimer = seconds / 2
        rebindingTimer = seconds * 7 / 8
        expirationTimer = seconds
        renewalExpiresAt = boundAt.map { $0 + Int64(seconds / 2) * 1000 }
        rebindExpiresAt = boundAt.map { $0 + Int64(seconds * 7 / 8) * 1000 }
        leaseExpiresAt = bound ? expires : nil
        boundFlag = bound
        reservedFlag = !bound
    }
}
