import BusCore

/// A machine RackBus knows: registered when it first asks for a boot profile (or by an operator),
/// identified by the MACs of its network interfaces.
///
/// `id` is derived from the first MAC (see ``NodeIdentity/nodeId(forMAC:)``), the same id
/// DHCPService announces in `dhcp.bind.success.<nodeId>`, so a node's events line up from its
/// first DHCP packet on.
public struct Node: Codable, Sendable, Equatable {
    public var id: String
    /// MACs in lowercase colon form (`52:54:00:12:34:56`).
    public var identifiers: [String]
    /// RackHD's node types: `compute` for machines that boot from the network.
    public var type: String
    public var name: String
    public var bootSettings: BootSettings?
    /// The latest catalog of each source (`smbios`, `dmi`, …), oldest source first.
    public var catalogs: [Catalog]
    /// The name of the SKU the node matched, if any.
    public var sku: String?
    /// Epoch milliseconds.
    public var createdAt: Int64
    public var updatedAt: Int64

    public init(
        id: String, identifiers: [String], type: String = "compute", name: String, bootSettings: BootSettings? = nil,
        catalogs: [Catalog] = [], sku: String? = nil, createdAt: Int64, updatedAt: Int64
    ) {
        self.id = id
        self.identifiers = identifiers
        self.type = type
        self.name = name
        self.bootSettings = bootSettings
        self.catalogs = catalogs
        self.sku = sku
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// The catalog from `source`, if the node has one.
    public func catalog(_ source: String) -> Catalog? { catalogs.first { $0.source == source } }
}

/// What a node boots when no running task gives it a profile (RackHD's `bootSettings`).
public struct BootSettings: Codable, Sendable, Equatable {
    /// A profile template name (`boot-local.ipxe`, `install-debian.ipxe`, …); nil boots the local disk.
    public var profile: String?
    /// Values the profile is rendered with, as `{{options.x}}`.
    public var options: [String: JSONValue]
    /// `false`: DHCP gives this node an address but no boot file, so it never network-boots.
    /// Missing means `true`.
    public var networkBoot: Bool?

    public init(profile: String? = nil, options: [String: JSONValue] = [:], networkBoot: Bool? = nil) {
        self.profile = profile
        self.options = options
        self.networkBoot = networkBoot
    }

    public var allowsNetworkBoot: Bool { networkBoot ?? true }
}

/// One source's view of a node's hardware (RackHD's catalog `{node, source, data}`).
public struct Catalog: Codable, Sendable, Equatable {
    public var source: String
    public var data: JSONValue
    /// Epoch milliseconds.
    public var createdAt: Int64

    public init(source: String, data: JSONValue, createdAt: Int64) {
        self.source = source
        self.data = data
        self.createdAt = createdAt
    }
}

/// A SKU: a named class of hardware, matched by rules over catalog paths (RackHD's
/// `{name, rules: [{path, equals|contains|…}]}`).
public struct SKUDefinition: Codable, Sendable, Equatable {
    public var name: String
    public var rules: [SKURule]

    public init(name: String, rules: [SKURule]) {
        self.name = name
        self.rules = rules
    }
}

/// One test on a catalog value. `path` starts with the catalog's source and goes on through the
/// data's keys, separated by dots: `smbios.manufacturer`, `dmi.Base Board Information.Manufacturer`.
/// Exactly one of `equals`, `contains` (a substring of the value as text) and `matches` (a
/// regular expression the value as text must match somewhere) is set.
public struct SKURule: Codable, Sendable, Equatable {
    public var path: String
    public var equals: JSONValue?
    public var contains: String?
    public var matches: String?

    public init(path: String, equals: JSONValue? = nil, contains: String? = nil, matches: String? = nil) {
        self.path = path
        self.equals = equals
        self.contains = contains
        self.matches = matches
    }
}
