import BusCore

// The eleven `on.task-graph-runner` RPCs of the conventions, with RackHD v1's request shapes
// (`{filter}`, `{definition}`, `{name, options, target}`) and replies boxed as `Result {value}`.

/// Which graphs or definitions a request means. `graphId` is accepted for `instanceId`, as RackHD v2 sent it.
public struct GraphFilter: Codable, Sendable, Equatable {
    public var instanceId: String?
    public var graphId: String?
    public var target: String?
    public var injectableName: String?

    public init(instanceId: String? = nil, target: String? = nil, injectableName: String? = nil) {
        self.instanceId = instanceId
        self.target = target
        self.injectableName = injectableName
    }

    public var id: String? { instanceId ?? graphId }
}

/// A graph instance as the RPCs and `rackbus graph` show it.
public struct GraphSummary: Codable, Sendable, Equatable {
    public struct TaskSummary: Codable, Sendable, Equatable {
        public var label: String
        public var name: String
        public var state: TaskState

        public init(label: String, name: String, state: TaskState) {
            self.label = label
            self.name = name
            self.state = state
        }
    }

    public var instanceId: String
    public var name: String
    public var friendlyName: String
    public var status: String
    public var target: String?
    public var createdAt: String
    /// By task id.
    public var tasks: [String: TaskSummary]

    public init(
        instanceId: String, name: String, friendlyName: String, status: String, target: String? = nil, createdAt: String,
        tasks: [String: TaskSummary]
    ) {
        self.instanceId = instanceId
        self.name = name
        self.friendlyName = friendlyName
        self.status = status
        self.target = target
        self.createdAt = createdAt
        self.tasks = tasks
    }
}

/// `getTaskGraphProperties`: everything about an instance.
public struct GraphProperties: Codable, Sendable, Equatable {
    public struct TaskProperties: Codable, Sendable, Equatable {
        public var taskId: String
        public var label: String
        public var name: String
        public var job: String
        public var state: TaskState
        public var options: [String: JSONValue]
        public var waitOn: WaitOn
        public var ignoreFailure: Bool
        public var terminalOnStates: [TaskState]
        public var error: String?

        public init(
            taskId: String, label: String, name: String, job: String, state: TaskState, options: [String: JSONValue], waitOn: WaitOn,
            ignoreFailure: Bool, terminalOnStates: [TaskState], error: String? = nil
        ) {
            self.taskId = taskId
            self.label = label
            self.name = name
            self.job = job
            self.state = state
            self.options = options
            self.waitOn = waitOn
            self.ignoreFailure = ignoreFailure
            self.terminalOnStates = terminalOnStates
            self.error = error
        }
    }

    public var instanceId: String
    public var status: String
    public var target: String?
    public var definition: GraphDefinition
    public var options: [String: JSONValue]
    public var context: [String: JSONValue]
    /// By label.
    public var tasks: [String: TaskProperties]

    public init(
        instanceId: String, status: String, target: String? = nil, definition: GraphDefinition, options: [String: JSONValue],
        context: [String: JSONValue], tasks: [String: TaskProperties]
    ) {
        self.instanceId = instanceId
        self.status = status
        self.target = target
        self.definition = definition
        self.options = options
        self.context = context
        self.tasks = tasks
    }
}

public struct GetTaskGraphLibrary: BusRequest {
    public typealias Reply = [GraphDefinition]
    public static let exchange = Exchange.taskGraphRunner
    public static let method = "methods.getTaskGraphLibrary"
    public var filter: GraphFilter?
    public init(filter: GraphFilter? = nil) { self.filter = filter }
}

public struct GetTaskLibrary: BusRequest {
    public typealias Reply = [TaskDefinition]
    public static let exchange = Exchange.taskGraphRunner
    public static let method = "methods.getTaskLibrary"
    public var filter: GraphFilter?
    public init(filter: GraphFilter? = nil) { self.filter = filter }
}

/// Replies with the active graph matching the filter, or `{}` when there is none.
public struct GetActiveTaskGraph: BusRequest {
    public typealias Reply = GraphSummary?
    public static let exchange = Exchange.taskGraphRunner
    public static let method = "methods.getActiveTaskGraph"
    public var filter: GraphFilter?
    public init(filter: GraphFilter? = nil) { self.filter = filter }
}

public struct GetActiveTaskGraphs: BusRequest {
    public typealias Reply = [GraphSummary]
    public static let exchange = Exchange.taskGraphRunner
    public static let method = "methods.getActiveTaskGraphs"
    public var filter: GraphFilter?
    public init(filter: GraphFilter? = nil) { self.filter = filter }
}

/// Validates and stores a graph definition; replies with its injectableName.
public struct DefineTaskGraph: BusRequest {
    public typealias Reply = String
    public static let exchange = Exchange.taskGraphRunner
    public static let method = "methods.defineTaskGraph"
    public var definition: GraphDefinition
    public init(definition: GraphDefinition) { self.definition = definition }
}

/// Stores a task (or base task) definition; replies with its injectableName.
public struct DefineTask: BusRequest {
    public typealias Reply = String
    public static let exchange = Exchange.taskGraphRunner
    public static let method = "methods.defineTask"
    public var definition: TaskDefinition
    public init(definition: TaskDefinition) { self.definition = definition }
}

/// Creates and starts a graph instance against `target`; replies with it. Refused with RackHD's
/// 400 `Unable to run multiple task graphs against a single target.` while that node has one.
public struct RunTaskGraph: BusRequest {
    public typealias Reply = GraphSummary
    public static let exchange = Exchange.taskGraphRunner
    public static let method = "methods.runTaskGraph"
    public var name: String
    public var options: [String: JSONValue]?
    public var target: String?
    /// Chosen by the caller, the same for every retry of one request: a retry after a lost reply
    /// gets the graph the first attempt created, not a second graph (nor a 400 for its target).
    /// RackHD's callers send none; a RackBus extension.
    public var idempotencyKey: String?
    public init(name: String, options: [String: JSONValue]? = nil, target: String? = nil, idempotencyKey: String? = nil) {
        self.name = name
        self.options = options
        self.target = target
        self.idempotencyKey = idempotencyKey
    }
}

/// Cancels the active graph matching the filter; replies with its id, or null when none was active.
public struct CancelTaskGraph: BusRequest {
    public typealias Reply = String?
    public static let exchange = Exchange.taskGraphRunner
    public static let method = "methods.cancelTaskGraph"
    public var filter: GraphFilter
    public init(filter: GraphFilter) { self.filter = filter }

    // RackHD sent the filter unboxed (`{graphId}` or `{instanceId}`); both shapes are accepted.
    public init(from decoder: any Decoder) throws {
        filter = try Self.decodeFilter(from: decoder)
    }
}

/// Pauses a graph: no new task starts; running tasks finish. Replies `{instanceId}`.
public struct PauseTaskGraph: BusRequest {
    public typealias Reply = GraphFilter
    public static let exchange = Exchange.taskGraphRunner
    public static let method = "methods.pauseTaskGraph"
    public var filter: GraphFilter
    public init(filter: GraphFilter) { self.filter = filter }
    public init(from decoder: any Decoder) throws { filter = try Self.decodeFilter(from: decoder) }
}

/// Resumes a paused graph. Replies `{instanceId}`.
public struct ResumeTaskGraph: BusRequest {
    public typealias Reply = GraphFilter
    public static let exchange = Exchange.taskGraphRunner
    public static let method = "methods.resumeTaskGraph"
    public var filter: GraphFilter
    public init(filter: GraphFilter) { self.filter = filter }
    public init(from decoder: any Decoder) throws { filter = try Self.decodeFilter(from: decoder) }
}

/// An instance's definition, options, context and per-task states.
public struct GetTaskGraphProperties: BusRequest {
    public typealias Reply = GraphProperties
    public static let exchange = Exchange.taskGraphRunner
    public static let method = "methods.getTaskGraphProperties"
    public var filter: GraphFilter
    public init(filter: GraphFilter) { self.filter = filter }
    public init(from decoder: any Decoder) throws { filter = try Self.decodeFilter(from: decoder) }
}

private enum FilterKeys: String, CodingKey {
    case filter
    case instance
}

extension BusRequest {
    /// `{filter: {...}}`, `{instance: "<id>"}` or the filter itself at the top level.
    fileprivate static func decodeFilter(from decoder: any Decoder) throws -> GraphFilter {
        let container = try decoder.container(keyedBy: FilterKeys.self)
        if let boxed = try container.decodeIfPresent(GraphFilter.self, forKey: .filter) { return boxed }
        if let instance = try container.decodeIfPresent(String.self, forKey: .instance) { return GraphFilter(instanceId: instance) }
        return try GraphFilter(from: decoder)
    }
}
