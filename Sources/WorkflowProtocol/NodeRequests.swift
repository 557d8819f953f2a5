import BusCore

// The node-scoped RPCs on `on.task`, answered by the task currently running against the node
// (`methods.<name>.<nodeId>`). Their request body is RackHD's `{}`; nobody answers when no task
// runs for the node, so callers read a timeout as "no active task". A task that has ended no
// longer answers (RackHD issue #191 was stale answers after a cancel).
//
// Each task runner serves them all from one private queue: a task binds its node's keys to its
// runner's queue while it runs, so a request reaches only the runner that runs the node's task.
// A request that still arrives for a node with no running task there (it raced the unbind) is
// acknowledged and left unanswered, like one nobody is bound for.

/// A request whose routing key ends with the node id and whose body is `{}`.
public protocol NodeRequest: BusRequest {
    var nodeId: String { get }
    init(nodeId: String)
}

extension NodeRequest {
    public var routingKey: String { "\(Self.method).\(nodeId)" }

    public init(from decoder: any Decoder) throws {
        // The node is in the routing key, not the body.
        self.init(nodeId: "")
    }

    public func encode(to encoder: any Encoder) throws {
        _ = encoder.container(keyedBy: NoKeys.self)
    }
}

private struct NoKeys: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// The task that answers for a node.
public struct ActiveTask: Codable, Sendable, Equatable {
    public var taskId: String
    public var graphId: String
    public var graphName: String
    public var taskName: String
    public var label: String
    public var job: String

    public init(taskId: String, graphId: String, graphName: String, taskName: String, label: String, job: String) {
        self.taskId = taskId
        self.graphId = graphId
        self.graphName = graphName
        self.taskName = taskName
        self.label = label
        self.job = job
    }
}

/// `methods.activeTaskExists.<nodeId>`: the running task, if one answers.
public struct ActiveTaskExists: NodeRequest {
    public typealias Reply = ActiveTask
    public static let exchange = Exchange.task
    public static let method = "methods.activeTaskExists"
    public var nodeId: String
    public init(nodeId: String) { self.nodeId = nodeId }
}

/// `methods.requestProfile.<nodeId>`: the iPXE profile the node should boot (the task's `profile` option).
public struct RequestProfile: NodeRequest {
    public typealias Reply = String
    public static let exchange = Exchange.task
    public static let method = "methods.requestProfile"
    public var nodeId: String
    public init(nodeId: String) { self.nodeId = nodeId }
}

/// `methods.getBootProfile.<nodeId>`: the same profile, under the name RackHD's helper used.
public struct GetBootProfile: NodeRequest {
    public typealias Reply = String
    public static let exchange = Exchange.task
    public static let method = "methods.getBootProfile"
    public var nodeId: String
    public init(nodeId: String) { self.nodeId = nodeId }
}

/// `methods.requestProperties.<nodeId>`: the running task's rendered options.
public struct RequestProperties: NodeRequest {
    public typealias Reply = [String: JSONValue]
    public static let exchange = Exchange.task
    public static let method = "methods.requestProperties"
    public var nodeId: String
    public init(nodeId: String) { self.nodeId = nodeId }
}

/// `methods.requestCommands.<nodeId>`: `{identifier, tasks: [{cmd}]}` for a task that runs commands on the node.
public struct RequestCommands: NodeRequest {
    public struct Commands: Codable, Sendable, Equatable {
        public var identifier: String
        public var tasks: [JSONValue]

        public init(identifier: String, tasks: [JSONValue]) {
            self.identifier = identifier
            self.tasks = tasks
        }
    }

    public typealias Reply = Commands
    public static let exchange = Exchange.task
    public static let method = "methods.requestCommands"
    public var nodeId: String
    public init(nodeId: String) { self.nodeId = nodeId }
}

/// `methods.respondCommands.<nodeId>` is a publish, not an RPC: `Result {value: {tasks: [{cmd, stdout, stderr, error}]}}`.
public enum RespondCommands {
    public static let method = "methods.respondCommands"
    public static func routingKey(nodeId: String) -> String { "\(method).\(nodeId)" }

    public struct Body: Codable, Sendable, Equatable {
        public var value: JSONValue
        public init(value: JSONValue) { self.value = value }
    }
}
