import BusCore
import Foundation

/// One graph instance: its compiled plan, its evaluation state, the shared context and the task
/// ids. Stored in two parts: what never changes (written once) and what does (rewritten on every
/// change; encoding the whole plan each time was most of the CPU a task cost).
struct GraphInstance: Sendable, Equatable {
    var id: String
    var plan: GraphPlan
    var run: GraphRun
    var target: String?
    var context: [String: JSONValue]
    /// Task id by label, fixed at creation so that every report names the same task.
    var taskIDs: [String: String]
    var errors: [String: String]
    var createdAt: Date
    /// The caller's key for the request that created it (``RunTaskGraph/idempotencyKey``).
    var idempotencyKey: String?

    var isActive: Bool { !run.status.isFinished }

    func label(ofTask taskID: String) -> String? {
        taskIDs.first { $0.value == taskID }?.key
    }

    struct Header: Codable, Sendable, Equatable {
        var plan: GraphPlan
        var target: String?
        var taskIDs: [String: String]
        var createdAt: Date
        var idempotencyKey: String?
    }

    struct State: Codable, Sendable, Equatable {
        var progress: GraphRun.Progress
        var context: [String: JSONValue]
        var errors: [String: String]
    }

    var header: Header {
        Header(plan: plan, target: target, taskIDs: taskIDs, createdAt: createdAt, idempotencyKey: idempotencyKey)
    }
    var state: State { State(progress: run.progress, context: context, errors: errors) }

    init(id: String, header: Header, state: State) {
        self.init(
            id: id, plan: header.plan, run: GraphRun(plan: header.plan, progress: state.progress), target: header.target,
            context: state.context,
            taskIDs: header.taskIDs, errors: state.errors, createdAt: header.createdAt, idempotencyKey: header.idempotencyKey)
    }

    init(
        id: String, plan: GraphPlan, run: GraphRun, target: String?, context: [String: JSONValue], taskIDs: [String: String],
        errors: [String: String], createdAt: Date, idempotencyKey: String? = nil
    ) {
        self.id = id
        self.plan = plan
        self.run = run
        self.target = target
        self.context = context
        self.taskIDs = taskIDs
        self.errors = errors
        self.createdAt = createdAt
        self.idempotencyKey = idempotencyKey
    }
}

/// The state is stored at every change of a graph: written and read without Foundation's
/// generic coders, as its `Codable` conformance writes it (`DirectJSONTests`).
extension GraphInstance.State: DirectJSONEncodable, DirectJSONObjectDecodable {
    func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        writer.key("progress")
        writer.beginObject()
        writer.member("status", progress.status)
        writer.key("states")
        writer.beginObject()
        for (label, state) in progress.states { writer.member(label, state.rawValue) }
        writer.endObject()
        writer.endObject()
        try writer.member("context", context)
        writer.key("errors")
        writer.object(errors)
        writer.endObject()
    }

    init(members json: JSONMembers) throws(JSONMembers.Mismatch) {
        let progress = try JSONMembers(.object(try json.object("progress")))
        var states: [String: TaskState] = [:]
        for (label, name) in try progress.strings("states") {
            guard let state = TaskState(rawValue: name) else { throw JSONMembers.Mismatch() }
            states[label] = state
        }
        self.init(
            progress: GraphRun.Progress(status: try progress.raw("status"), states: states), context: try json.object("context"),
            errors: try json.strings("errors"))
    }

    /// As stored.
    func encoded() throws -> Data {
        Data(try WireFormat.encode(self))
    }

    static func decoded(from data: Data) throws -> Self {
        try WireFormat.decode(Self.self, from: [UInt8](data))
    }
}

/// The header is written once per graph, but it holds the whole plan: directly too.
extension GraphInstance.Header: DirectJSONEncodable {
    func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        writer.key("plan")
        try plan.writeJSON(into: &writer)
        writer.member("target", target)
        writer.key("taskIDs")
        writer.object(taskIDs)
        writer.key("createdAt")
        // Foundation's default for a Date: seconds since 2001.
        try writer.number(createdAt.timeIntervalSinceReferenceDate)
        writer.member("idempotencyKey", idempotencyKey)
        writer.endObject()
    }

    /// As stored.
    func encoded() throws -> Data {
        Data(try WireFormat.encode(self))
    }
}
