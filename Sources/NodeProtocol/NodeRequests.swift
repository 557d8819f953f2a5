import BusCore

// The node registry's RPCs, on `on.http` (RackHD kept its nodes in on-http). Requests are
// `{"value": …}` or plain objects; replies are `Result {"value": …}`. An unknown node is a 404
// ErrorEvent, an invalid request a 400. The registry is the only owner of nodes: other services
// ask it over the bus and never read its store.

/// `methods.getNode`: the node with this id, or the node that has this MAC among its identifiers.
public struct GetNode: BusRequest {
    public typealias Reply = Node
    public static let exchange = Exchange.http
    public static let method = "methods.getNode"
    /// A node id or a MAC (any spelling ``NodeIdentity/normalizedMAC(_:)`` reads).
    public var value: String
    public init(_ idOrMAC: String) { value = idOrMAC }
}

/// `methods.removeNode`: removes the node with this id (or that has this MAC) with its MACs and
/// catalogs, and replies with it; announced as `node.removed.<nodeId>`. Its MACs are unknown
/// again afterwards. Whether it may go (no active workflow) is the caller's check.
public struct RemoveNode: BusRequest {
    public typealias Reply = Node
    public static let exchange = Exchange.http
    public static let method = "methods.removeNode"
    /// A node id or a MAC.
    public var value: String
    public init(_ idOrMAC: String) { value = idOrMAC }
}

/// `methods.listNodes`: every node, oldest first.
public struct ListNodes: BusRequest {
    public typealias Reply = [Node]
    public static let exchange = Exchange.http
    public static let method = "methods.listNodes"
    public init() {}
}

/// `methods.registerNode`: the node that has any of `macs`, created if there is none. A new
/// node's id comes from its first MAC; its creation is announced as `node.discovered.<nodeId>`.
/// Registering again adds MACs the node did not have yet.
public struct RegisterNode: BusRequest {
    public struct Registered: Codable, Sendable, Equatable {
        public var node: Node
        /// Whether this call created it.
        public var created: Bool
        public init(node: Node, created: Bool) {
            self.node = node
            self.created = created
        }
    }

    public typealias Reply = Registered
    public static let exchange = Exchange.http
    public static let method = "methods.registerNode"
    public var macs: [String]
    public var name: String?
    public var type: String?
    public init(macs: [String], name: String? = nil, type: String? = nil) {
        self.macs = macs
        self.name = name
        self.type = type
    }
}

/// `methods.setBootSettings`: replaces a node's boot settings (nil clears them); replies with the node.
public struct SetBootSettings: BusRequest {
    public typealias Reply = Node
    public static let exchange = Exchange.http
    public static let method = "methods.setBootSettings"
    public var nodeId: String
    public var bootSettings: BootSettings?
    public init(nodeId: String, bootSettings: BootSettings?) {
        self.nodeId = nodeId
        self.bootSettings = bootSettings
    }
}

/// `methods.addCatalog`: stores a catalog for a node, replacing the one from the same source.
public struct AddCatalog: BusRequest {
    public typealias Reply = Catalog
    public static let exchange = Exchange.http
    public static let method = "methods.addCatalog"
    public var nodeId: String
    public var source: String
    public var data: JSONValue
    public init(nodeId: String, source: String, data: JSONValue) {
        self.nodeId = nodeId
        self.source = source
        self.data = data
    }
}

/// `methods.defineSku`: creates or replaces a SKU definition (a 400 names what is invalid).
public struct DefineSKU: BusRequest {
    public typealias Reply = SKUDefinition
    public static let exchange = Exchange.http
    public static let method = "methods.defineSku"
    public var value: SKUDefinition
    public init(_ definition: SKUDefinition) { value = definition }
}

/// `methods.listSkus`: every SKU definition, by name.
public struct ListSKUs: BusRequest {
    public typealias Reply = [SKUDefinition]
    public static let exchange = Exchange.http
    public static let method = "methods.listSkus"
    public init() {}
}

/// `methods.assignSku`: matches the SKU rules against the node's catalogs, stores the result
/// and, when a SKU matched, announces `sku.assigned.<nodeId>` `{sku}`.
public struct AssignSKU: BusRequest {
    public struct Assigned: Codable, Sendable, Equatable {
        /// The SKU that matched, or nil.
        public var sku: String?
        public init(sku: String?) { self.sku = sku }
    }

    public typealias Reply = Assigned
    public static let exchange = Exchange.http
    public static let method = "methods.assignSku"
    public var nodeId: String
    public init(nodeId: String) { self.nodeId = nodeId }
}
