import BusCore

/// A task's state (RackHD's `Task` states). `pending` and `running` are active; the other four
/// are finished.
public enum TaskState: String, Codable, Sendable, CaseIterable {
    case pending
    case running
    case succeeded
    case failed
    case cancelled
    case timeout

    public var isFinished: Bool { self != .pending && self != .running }
    /// failed, cancelled and timeout: the states that fail a graph unless the task ignores failure.
    public var isFailure: Bool { self == .failed || self == .cancelled || self == .timeout }
}

/// A state a task can wait on: one of the four finished states, or `finished` (any of them).
public enum WaitState: String, Codable, Sendable, CaseIterable {
    case succeeded
    case failed
    case timeout
    case cancelled
    case finished

    /// Whether an upstream task that ended in `state` satisfies this wait.
    public func isSatisfied(by state: TaskState) -> Bool {
        switch self {
        case .finished: return state.isFinished
        case .succeeded: return state == .succeeded
        case .failed: return state == .failed
        case .timeout: return state == .timeout
        case .cancelled: return state == .cancelled
        }
    }
}

/// `waitOn`: every label must end in one of its states (a list means any of them); the optional
/// `anyOf` group is satisfied when any one of its labels ends in one of its states.
public struct WaitOn: Codable, Sendable, Equatable {
    public var all: [String: [WaitState]]
    public var anyOf: [String: [WaitState]]?

    public init(all: [String: [WaitState]] = [:], anyOf: [String: [WaitState]]? = nil) {
        self.all = all
        self.anyOf = anyOf
    }

    /// Every label mentioned, in either part.
    public var labels: Set<String> { Set(all.keys).union(anyOf?.keys ?? [:].keys) }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ string: String) { stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        var all: [String: [WaitState]] = [:]
        var anyOf: [String: [WaitState]]?
        for key in container.allKeys {
            if key.stringValue == "anyOf" {
                let group = try container.nestedContainer(keyedBy: Key.self, forKey: key)
                var parsed: [String: [WaitState]] = [:]
                for label in group.allKeys { parsed[label.stringValue] = try Self.states(group, label) }
                anyOf = parsed
            } else {
                all[key.stringValue] = try Self.states(container, key)
            }
        }
        self.all = all
        self.anyOf = anyOf
    }

    /// A state is a string or a list of strings.
    private static func states(_ container: KeyedDecodingContainer<Key>, _ key: Key) throws -> [WaitState] {
        if let single = try? container.decode(WaitState.self, forKey: key) { return [single] }
        return try container.decode([WaitState].self, forKey: key)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        for (label, states) in all.sorted(by: { $0.key < $1.key }) {
            if states.count == 1 {
                try container.encode(states[0], forKey: Key(label))
            } else {
                try container.encode(states, forKey: Key(label))
            }
        }
        if let anyOf {
            var group = container.nestedContainer(keyedBy: Key.self, forKey: Key("anyOf"))
            for (label, states) in anyOf.sorted(by: { $0.key < $1.key }) {
                if states.count == 1 {
                    try group.encode(states[0], forKey: Key(label))
                } else {
                    try group.encode(states, forKey: Key(label))
                }
            }
        }
    }
}

/// A task definition in RackHD's schema. A *task* (`implementsTask` set) names the base task it
/// runs and its default `options`; a *base task* (`runJob` set) names the job and what it needs.
public struct TaskDefinition: Codable, Sendable, Equatable {
    public var friendlyName: String
    public var injectableName: String
    /// Task: the base task's injectableName.
    public var implementsTask: String?
    /// Base task: the job to run, e.g. `Job.noop`.
    public var runJob: String?
    /// Base task (legacy): options a graph must supply.
    public var requiredOptions: [String]?
    public var requiredProperties: [String: JSONValue]?
    public var options: [String: JSONValue]?
    public var properties: [String: JSONValue]?
    public var optionsSchema: JSONValue?

    public init(
        friendlyName: String, injectableName: String, implementsTask: String? = nil, runJob: String? = nil,
        requiredOptions: [String]? = nil, requiredProperties: [String: JSONValue]? = nil, options: [String: JSONValue]? = nil,
        properties: [String: JSONValue]? = nil, optionsSchema: JSONValue? = nil
    ) {
        self.friendlyName = friendlyName
        self.injectableName = injectableName
        self.implementsTask = implementsTask
        self.runJob = runJob
        self.requiredOptions = requiredOptions
        self.requiredProperties = requiredProperties
        self.options = options
        self.properties = properties
        self.optionsSchema = optionsSchema
    }

    public var isBaseTask: Bool { runJob != nil && implementsTask == nil }
}

/// One task in a graph: a label, a task by name or inline, and what it waits on.
public struct GraphTask: Codable, Sendable, Equatable {
    public var label: String
    /// A task injectableName; an API path prefix is ignored (only the part after the last `/`).
    public var taskName: String?
    public var taskDefinition: TaskDefinition?
    public var waitOn: WaitOn?
    public var ignoreFailure: Bool?
    public var optionOverrides: [String: JSONValue]?

    public init(
        label: String, taskName: String? = nil, taskDefinition: TaskDefinition? = nil, waitOn: WaitOn? = nil, ignoreFailure: Bool? = nil,
        optionOverrides: [String: JSONValue]? = nil
    ) {
        self.label = label
        self.taskName = taskName
        self.taskDefinition = taskDefinition
        self.waitOn = waitOn
        self.ignoreFailure = ignoreFailure
        self.optionOverrides = optionOverrides
    }

    /// `taskName` without an API path prefix.
    public var resolvedTaskName: String? {
        taskName.map { name in name.split(separator: "/").last.map(String.init) ?? name }
    }
}

/// A graph definition in RackHD's schema. `options` holds `defaults` (offered to every task) and
/// per-label objects (for that task only).
public struct GraphDefinition: Codable, Sendable, Equatable {
    public var friendlyName: String
    public var injectableName: String
    public var options: [String: JSONValue]?
    public var tasks: [GraphTask]
    public var serviceGraph: Bool?

    public init(
        friendlyName: String, injectableName: String, options: [String: JSONValue]? = nil, tasks: [GraphTask], serviceGraph: Bool? = nil
    ) {
        self.friendlyName = friendlyName
        self.injectableName = injectableName
        self.options = options
        self.tasks = tasks
        self.serviceGraph = serviceGraph
    }
}
