import BusCore

// The boot path's events on `on.events`, with RackHD's bodies. `<nodeId>` is the node's id, or
// `external` for a client RackBus cannot attribute (RackHD's word).

/// `tftp.success.<nodeId>`: a file was sent completely. `time` is the transfer's duration in ms.
public struct TFTPSuccessEvent: Codable, Sendable, Equatable {
    public var file: String
    public var remoteAddress: String
    public var remotePort: Int
    public var size: Int
    public var time: Int

    public init(file: String, remoteAddress: String, remotePort: Int, size: Int, time: Int) {
        self.file = file
        self.remoteAddress = remoteAddress
        self.remotePort = remotePort
        self.size = size
        self.time = time
    }

    public static func routingKey(nodeId: String?) -> String { "tftp.success.\(nodeId ?? NodeIdentity.external)" }
}

/// `tftp.failure.<nodeId>`: a read request was refused or a transfer was abandoned.
public struct TFTPFailureEvent: Codable, Sendable, Equatable {
    public var file: String
    public var remoteAddress: String
    public var remotePort: Int
    public var reason: String

    public init(file: String, remoteAddress: String, remotePort: Int, reason: String) {
        self.file = file
        self.remoteAddress = remoteAddress
        self.remotePort = remotePort
        self.reason = reason
    }

    public static func routingKey(nodeId: String?) -> String { "tftp.failure.\(nodeId ?? NodeIdentity.external)" }
}

/// `http.response.<nodeId>`: a provisioning client's request was answered. `time` is the
/// request's duration in ms.
public struct HTTPResponseEvent: Codable, Sendable, Equatable {
    public var address: String
    public var method: String
    public var url: String
    public var statusCode: Int
    public var time: Int

    public init(address: String, method: String, url: String, statusCode: Int, time: Int) {
        self.address = address
        self.method = method
        self.url = url
        self.statusCode = statusCode
        self.time = time
    }

    public static func routingKey(nodeId: String?) -> String { "http.response.\(nodeId ?? NodeIdentity.external)" }
}

/// `sku.assigned.<nodeId>`: `{sku}` (RackHD's body).
public struct SKUAssignedEvent: Codable, Sendable, Equatable {
    public var sku: String
    public init(sku: String) { self.sku = sku }
    public static func routingKey(nodeId: String) -> String { "sku.assigned.\(nodeId)" }
}

/// `node.<action>.<nodeId>` in RackHD's external-event shape: `discovered` when the registry
/// creates a node, `removed` when an operator removes one. `data` is the node.
public struct NodeLifecycleEvent: Codable, Sendable, Equatable {
    public enum Action: String, Sendable {
        case discovered
        case removed
    }

    public var type: String
    public var action: String
    public var typeId: String
    public var nodeId: String
    public var severity: String
    public var version: String
    public var createdAt: String
    public var data: Node

    /// `createdAt` is ISO 8601, as RackHD's events carry it: when it happened.
    public init(_ action: Action, node: Node, createdAt: String) {
        type = "node"
        self.action = action.rawValue
        typeId = node.id
        nodeId = node.id
        severity = "information"
        version = "1.0"
        self.createdAt = createdAt
        data = node
    }

    public static func routingKey(_ action: Action, nodeId: String) -> String { "node.\(action.rawValue).\(nodeId)" }
}
