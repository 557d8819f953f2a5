import BusCore

/// What the TaskGraphRunner, the Scheduler and the task runners say to each other, following
/// the conventions: `schedule` on `on.scheduler`, `run.<taskId>` and `cancel.<taskId>` on
/// `on.task`, `task.finished.<taskId>`, `graph.started.<graphId>` and `graph.finished.<graphId>`
/// on `on.events`.
/// The durable work queues of the workflow services, before the exchange prefix
/// (`on.rackbus.scheduler`). Each producer declares its consumer's queue too, so work sent
/// before that service is up waits for it.
public enum WorkflowQueues {
    /// The Schedulers' shared queue: `schedule` on the scheduler exchange.
    public static let scheduler = "rackbus.scheduler"
    public static let schedulerBindings: [(exchange: Exchange, pattern: String)] = [(.scheduler, WorkflowKeys.schedule)]
    /// One Scheduler takes `schedule` requests at a time; the others stand by and the broker
    /// hands the queue to one of them when it goes, so one concurrency limit holds for all.
    public static let schedulerArguments: [String: HeaderValue] = ["x-single-active-consumer": .bool(true)]
    /// The built-in task runners' shared queue: `run.*` on the task exchange.
    public static let taskRunner = "rackbus.task-runner"
    public static let taskRunnerBindings: [(exchange: Exchange, pattern: String)] = [(.task, "run.*")]

    public static func name(_ queue: String, prefix: String) -> String { "\(prefix).\(queue)" }
}

public enum WorkflowKeys {
    public static let schedule = "schedule"
    /// ``TasksEnded`` on the scheduler exchange: TaskGraphRunner → every Scheduler.
    public static let tasksEnded = "tasks.ended"
    public static func run(_ taskID: String) -> String { "run.\(taskID)" }
    public static func cancel(_ taskID: String) -> String { "cancel.\(taskID)" }
    public static func taskFinished(_ taskID: String) -> String { "task.finished.\(taskID)" }
    public static func graphStarted(_ graphID: String) -> String { "graph.started.\(graphID)" }
    public static func graphFinished(_ graphID: String) -> String { "graph.finished.\(graphID)" }
    public static func graphProgress(_ graphID: String) -> String { "graph.progress.\(graphID)" }
}

public enum WorkflowHeaders {
    /// Marks a `schedule` or `run` that may repeat one sent before: an outbox message sent again
    /// by a sweep, a `schedule` the broker redelivered, or one for a task the Scheduler already
    /// handed on. Only these (and the broker's redeliveries) can name a task that already ran, so
    /// a task runner looks in its finished-task journal for them alone, not for every task.
    public static let repeated = "x-rackbus-repeated"

    /// The headers of a message that is `repeated`, or of one that is not.
    public static func marking(repeated: Bool) -> [String: HeaderValue] {
        repeated ? [Self.repeated: .bool(true)] : [:]
    }

    public static func isRepeated<Message>(_ delivery: Delivery<Message>) -> Bool {
        delivery.redelivered || delivery.properties.headers[repeated] == .bool(true)
    }
}

/// A task ready to run: the body of `schedule` (TaskGraphRunner → Scheduler) and of
/// `run.<taskId>` (Scheduler → a task runner). It carries everything a runner needs, so runners
/// (built in, or external workers in any language) need no access to the graph's store.
public struct TaskSpec: Codable, Sendable, Equatable, BusPayload {
    public static let payloadType = "Object"
    public var taskId: String
    public var graphId: String
    public var graphName: String
    public var label: String
    /// The task's injectableName, e.g. `Task.noop`.
    public var taskName: String
    /// The job to run, e.g. `Job.noop`.
    public var job: String
    /// Rendered options.
    public var options: [String: JSONValue]
    /// The graph's shared context at the time the task was scheduled.
    public var context: [String: JSONValue]
    /// The node the graph runs against, if any.
    public var nodeId: String?
    /// Milliseconds the task may run (`_taskTimeout`); 0 or less means no limit.
    public var timeoutMs: Int
    /// RackHD's `overrides` (`schedulerOverrides`), passed through.
    public var overrides: [String: JSONValue]?

    public init(
        taskId: String, graphId: String, graphName: String, label: String, taskName: String, job: String, options: [String: JSONValue],
        context: [String: JSONValue], nodeId: String?, timeoutMs: Int, overrides: [String: JSONValue]? = nil
    ) {
        self.taskId = taskId
        self.graphId = graphId
        self.graphName = graphName
        self.label = label
        self.taskName = taskName
        self.job = job
        self.options = options
        self.context = context
        self.nodeId = nodeId
        self.timeoutMs = timeoutMs
        self.overrides = overrides
    }
}

/// The body of `cancel.<taskId>`. `errName` is RackHD's: `TaskTimeoutError` makes the task end
/// in `timeout`, anything else in `cancelled`.
public struct TaskCancellation: Codable, Sendable, Equatable {
    public var taskId: String
    public var errName: String?
    public var errMessage: String?

    public init(taskId: String, errName: String? = nil, errMessage: String? = nil) {
        self.taskId = taskId
        self.errName = errName
        self.errMessage = errMessage
    }

    public static let timeoutErrorName = "TaskTimeoutError"
}

/// The body of `task.finished.<taskId>` (RackHD v2's shape, with `label` added).
public struct TaskFinished: Codable, Sendable, Equatable, BusPayload {
    public static let payloadType = "Object"
    public var taskId: String
    public var taskName: String
    public var label: String
    public var graphId: String
    public var graphName: String
    public var state: TaskState
    /// The error's description when the task did not succeed.
    public var error: String?
    /// Context the task adds to the graph's shared context.
    public var context: [String: JSONValue]?

    public init(
        taskId: String, taskName: String, label: String, graphId: String, graphName: String, state: TaskState, error: String? = nil,
        context: [String: JSONValue]? = nil
    ) {
        self.taskId = taskId
        self.taskName = taskName
        self.label = label
        self.graphId = graphId
        self.graphName = graphName
        self.state = state
        self.error = error
        self.context = context
    }
}

/// The body of `tasks.ended` on the scheduler exchange: tasks whose end a TaskGraphRunner has
/// stored (or whose report it could not read), so the Schedulers free their slots. One message
/// carries the ends of a few milliseconds: the Schedulers need not hear each `task.finished`,
/// and that copy of every report cost the broker more than the batch does.
public struct TasksEnded: Codable, Sendable, Equatable, BusPayload {
    public static let payloadType = "Object"
    public var taskIds: [String]

    public init(taskIds: [String]) {
        self.taskIds = taskIds
    }
}

/// The body of `graph.started.<graphId>` and `graph.finished.<graphId>`: `{graphId, graphName, status}`
/// (graphName is the friendlyName, as in RackHD), plus the node.
public struct GraphEvent: Codable, Sendable, Equatable {
    public var graphId: String
    public var graphName: String
    public var status: String
    public var nodeId: String?

    public init(graphId: String, graphName: String, status: String, nodeId: String?) {
        self.graphId = graphId
        self.graphName = graphName
        self.status = status
        self.nodeId = nodeId
    }
}

/// `graph.progress.<graphId>`: how far a graph is.
public struct GraphProgress: Codable, Sendable, Equatable {
    public var graphId: String
    public var graphName: String
    public var nodeId: String?
    public var finishedTasks: Int
    public var totalTasks: Int
    public var taskId: String?
    public var label: String?
    public var taskState: TaskState?

    public init(
        graphId: String, graphName: String, nodeId: String? = nil, finishedTasks: Int, totalTasks: Int, taskId: String? = nil,
        label: String? = nil, taskState: TaskState? = nil
    ) {
        self.graphId = graphId
        self.graphName = graphName
        self.nodeId = nodeId
        self.finishedTasks = finishedTasks
        self.totalTasks = totalTasks
        self.taskId = taskId
        self.label = label
        self.taskState = taskState
    }
}
