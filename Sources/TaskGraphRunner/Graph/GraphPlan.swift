import BusCore

/// One task of a graph as the runner needs it: definition, base task, graph options and the
/// graph's shape folded into a single record (RackHD's task record inside a graph object).
public struct CompiledTask: Codable, Sendable, Equatable {
    public var label: String
    /// The task definition's injectableName.
    public var taskName: String
    public var friendlyName: String
    /// The base task's job, e.g. `Job.noop`.
    public var runJob: String
    /// Merged as RackHD's section 4.3 says; templates are left for the runner to render.
    public var options: [String: JSONValue]
    /// The task's properties merged over its base task's.
    public var properties: [String: JSONValue]
    /// As defined, except that a list naming `finished` is collapsed to `[finished]`.
    public var waitOn: WaitOn
    public var ignoreFailure: Bool
    /// The finished states in which this task ends its branch: no downstream task waits for them.
    /// Sorted by rawValue.
    public var terminalOnStates: [TaskState]

    public init(
        label: String, taskName: String, friendlyName: String, runJob: String, options: [String: JSONValue] = [:],
        properties: [String: JSONValue] = [:], waitOn: WaitOn = WaitOn(), ignoreFailure: Bool = false, terminalOnStates: [TaskState] = []
    ) {
        self.label = label
        self.taskName = taskName
        self.friendlyName = friendlyName
        self.runJob = runJob
        self.options = options
        self.properties = properties
        self.waitOn = waitOn
        self.ignoreFailure = ignoreFailure
        self.terminalOnStates = terminalOnStates
    }
}

/// A validated graph, ready to run: the definition as given, the graph options after the run
/// request's options were merged in, and the compiled tasks in definition order.
public struct GraphPlan: Codable, Sendable, Equatable {
    public var definition: GraphDefinition
    public var options: [String: JSONValue]
    public var tasks: [CompiledTask]

    public init(definition: GraphDefinition, options: [String: JSONValue], tasks: [CompiledTask]) {
        self.definition = definition
        self.options = options
        self.tasks = tasks
    }
}

extension CompiledTask: DirectJSONEncodable {
    public func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        writer.member("label", label)
        writer.member("taskName", taskName)
        writer.member("friendlyName", friendlyName)
        writer.member("runJob", runJob)
        try writer.member("options", options)
        try writer.member("properties", properties)
        writer.key("waitOn")
        try waitOn.writeJSON(into: &writer)
        writer.member("ignoreFailure", ignoreFailure)
        writer.key("terminalOnStates")
        writer.beginArray()
        for state in terminalOnStates { writer.string(state.rawValue) }
        writer.endArray()
        writer.endObject()
    }
}

extension GraphPlan: DirectJSONEncodable {
    public func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        writer.key("definition")
        try definition.writeJSON(into: &writer)
        try writer.member("options", options)
        writer.key("tasks")
        writer.beginArray()
        for task in tasks { try task.writeJSON(into: &writer) }
        writer.endArray()
        writer.endObject()
    }
}
