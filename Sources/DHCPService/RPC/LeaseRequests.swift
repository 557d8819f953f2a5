import BusCore

// The nine lease RPCs of the conventions, on `on.dhcp`, with RackHD's payload types: requests
// are `{"value": …}` typed `IpAddress`, `MacAddress` or `Object`; replies are `Result`
// `{"value": …}` (`lookupIpLease` answers `MacAddress` when it finds a lease). Unknown leases get
// RackHD's empty reply, `{"value": {}}`; invalid addresses get a 400 ErrorEvent.

/// `methods.lookupIpLease`: the MAC holding a bound lease on an IP.
public struct LookupIpLease: BusRequest {
    public typealias Reply = MACOrEmpty
    public static let exchange = Exchange.dhcp
    public static let method = "methods.lookupIpLease"
    public static let payloadType = "IpAddress"
    public var value: String
    public init(ip: String) { value = ip }

    public static func replyPayloadType(for reply: MACOrEmpty) -> String {
        reply.mac == nil ? WireFormat.resultType : "MacAddress"
    }
}

/// `methods.ipInRange`: whether an IP is inside the served pool.
public struct IpInRange: BusRequest {
    public typealias Reply = Bool
    public static let exchange = Exchange.dhcp
    public static let method = "methods.ipInRange"
    public static let payloadType = "IpAddress"
    public var value: String
    public init(ip: String) { value = ip }
}

/// `methods.peekLeaseTable`: `{leases: {mac: lease}, pinned: {mac: ip}}`.
public struct PeekLeaseTable: BusRequest {
    public typealias Reply = LeaseTableSnapshot
    public static let exchange = Exchange.dhcp
    public static let method = "methods.peekLeaseTable"
    public init() {}
}

/// `methods.removeLease`: drop the lease of a MAC; replies with it, or `{}`.
public struct RemoveLease: BusRequest {
    public typealias Reply = LeaseOrEmpty
    public static let exchange = Exchange.dhcp
    public static let method = "methods.removeLease"
    public static let payloadType = "MacAddress"
    public var value: String
    public init(mac: String) { value = mac }
}

/// `methods.removeLeaseByIp`: drop the lease on an IP; replies with it, or `{}`.
public struct RemoveLeaseByIp: BusRequest {
    public typealias Reply = LeaseOrEmpty
    public static let exchange = Exchange.dhcp
    public static let method = "methods.removeLeaseByIp"
    public static let payloadType = "IpAddress"
    public var value: String
    public init(ip: String) { value = ip }
}

/// `methods.pinMac`: make a MAC's current address sticky; replies with the lease (404 without one).
public struct PinMac: BusRequest {
    public typealias Reply = LeaseRecord
    public static let exchange = Exchange.dhcp
    public static let method = "methods.pinMac"
    public static let payloadType = "MacAddress"
    public var value: String
    public init(mac: String) { value = mac }
}

/// `methods.unpinMac`: replies `{ip}` with the address that was pinned, or `{}`.
public struct UnpinMac: BusRequest {
    public typealias Reply = PinnedIP
    public static let exchange = Exchange.dhcp
    public static let method = "methods.unpinMac"
    public static let payloadType = "MacAddress"
    public var value: String
    public init(mac: String) { value = mac }
}

/// `methods.pinIp` (RackHD never implemented it): reserve an address for a MAC.
/// Request `{"value": {"mac": "00:11:22:aa:bb:cc", "ip": "172.31.128.50"}}` (type `Object`);
/// reply `{"value": {"mac": …, "ip": …}}`. 400 outside the pool, 409 when the address or the MAC is
/// pinned elsewhere or the address is leased to another MAC.
public struct PinIp: BusRequest {
    public struct Pin: Codable, Sendable, Equatable {
        public var mac: String
        public var ip: String
        public init(mac: String, ip: String) {
            self.mac = mac
            self.ip = ip
        }
    }

    public typealias Reply = Pin
    public static let exchange = Exchange.dhcp
    public static let method = "methods.pinIp"
    public var value: Pin
    public init(mac: String, ip: String) { value = Pin(mac: mac, ip: ip) }
}

/// `methods.unpinIp`: replies `{mac}` with the MAC the address was pinned to, or `{}`.
public struct UnpinIp: BusRequest {
    public typealias Reply = PinnedMAC
    public static let exchange = Exchange.dhcp
    public static let method = "methods.unpinIp"
    public static let payloadType = "IpAddress"
    public var value: String
    public init(ip: String) { value = ip }
}

/// A MAC as a string, or RackHD's empty object when there is none.
public struct MACOrEmpty: Codable, Sendable, Equatable {
    public var mac: String?
    public init(mac: String?) { self.mac = mac }

    public init(from decoder: any Decoder) throws {
        mac = try? decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        if let mac {
            var container = encoder.singleValueContainer()
            try container.encode(mac)
        } else {
            _ = encoder.container(keyedBy: EmptyKeys.self)
        }
    }
}

/// A lease, or RackHD's empty object when there is none.
public struct LeaseOrEmpty: Codable, Sendable, Equatable {
    public var lease: LeaseRecord?
    public init(lease: LeaseRecord?) { self.lease = lease }

    public init(from decoder: any Decoder) throws {
        lease = try? LeaseRecord(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        if let lease {
            try lease.encode(to: encoder)
        } else {
            _ = encoder.container(keyedBy: EmptyKeys.self)
        }
    }
}

public struct PinnedIP: Codable, Sendable, Equatable {
    public var ip: String?
    public init(ip: String?) { self.ip = ip }
}

public struct PinnedMAC: Codable, Sendable, Equatable {
    public var mac: String?
    public init(mac: String?) { self.mac = mac }
}

/// Keys of an empty object: encoding through a keyed container with none writes `{}`.
private struct EmptyKeys: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
