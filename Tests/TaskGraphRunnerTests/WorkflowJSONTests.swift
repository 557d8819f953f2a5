import BusCore
import Foundation
import Testing

@testable import Scheduler
@testable import TaskGraphRunner

/// The workflow bodies written and read directly (`DirectJSONEncodable`, `DirectJSONDecodable`)
/// say what their `Codable` conformances say: the same JSON out, the same values in.
@Suite("Workflow bodies without Foundation's coders")
struct WorkflowJSONTests {
    static let specs = [
        TaskSpec(
            taskId: "t1", graphId: "g1", graphName: "Graph.x", label: "first", taskName: "Task.noop", job: "Job.noop",
            options: ["delay": 5, "commands": ["a \"quoted\" one", ["nested": true]]], context: ["graphId": "g1"], nodeId: nil,
            timeoutMs: 2500),
        TaskSpec(
            taskId: "t2", graphId: "g2", graphName: "Graph.y", label: "second", taskName: "Task.x", job: "Job.x", options: [:],
            context: [:], nodeId: "node-1", timeoutMs: 0, overrides: ["timeout": 1.5]),
    ]

    static let reports = [
        TaskFinished(taskId: "t1", taskName: "Task.noop", label: "first", graphId: "g1", graphName: "Graph.x", state: .succeeded),
        TaskFinished(
            taskId: "t2", taskName: "Task.x", label: "second", graphId: "g2", graphName: "Graph.y", state: .failed, error: "boom\nline 2",
            context: ["added": ["k": .null]]),
    ]

    /// The same JSON, whatever the order of keys.
    static func expectSameJSON<Value: DirectJSONEncodable>(_ value: Value, sourceLocation: SourceLocation = #_sourceLocation) throws {
        var writer = JSONWriter()
        try value.writeJSON(into: &writer)
        let direct = try JSONDecoder().decode(JSONValue.self, from: Data(writer.bytes))
        let foundation = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(value))
        #expect(direct == foundation, sourceLocation: sourceLocation)
    }

    @Test("a TaskSpec: written and read as Foundation does", arguments: specs)
    func taskSpec(spec: TaskSpec) throws {
        try Self.expectSameJSON(spec)
        let body = Array(try JSONEncoder().encode(spec))
        #expect(TaskSpec(json: try #require(JSONParser.parse(body))) == spec)
        #expect(try WireFormat.decode(TaskSpec.self, from: WireFormat.encode(spec)) == spec)
    }

    @Test("a task's end: written and read as Foundation does", arguments: reports)
    func taskFinished(report: TaskFinished) throws {
        try Self.expectSameJSON(report)
        #expect(TaskFinished(json: try #require(JSONParser.parse(Array(try JSONEncoder().encode(report))))) == report)
    }

    @Test("the run RPC's request and its reply: written and read as Foundation does")
    func runTaskGraph() throws {
        for request in [
            RunTaskGraph(name: "Graph.noop-example"),
            RunTaskGraph(name: "Graph.x", options: ["defaults": ["a": 1]], target: "node-1", idempotencyKey: "k-1"),
        ] {
            try Self.expectSameJSON(request)
            let read = RunTaskGraph(json: try #require(JSONParser.parse(Array(try JSONEncoder().encode(request)))))
            #expect(read?.name == request.name && read?.options == request.options && read?.target == request.target)
            #expect(read?.idempotencyKey == request.idempotencyKey)
        }
        for summary in [
            GraphSummary(
                instanceId: "g1", name: "Graph.x", friendlyName: "x", status: "running", createdAt: "2026-11-30T22:00:00Z", tasks: [:]),
            GraphSummary(
                instanceId: "g2", name: "Graph.y", friendlyName: "y \"quoted\"", status: "succeeded", target: "node-1",
                createdAt: "2026-11-30T22:00:01Z",
                tasks: [
                    "t1": .init(label: "first", name: "Task.noop", state: .succeeded),
                    "t2": .init(label: "second", name: "Task.x", state: .pending),
                ]),
        ] {
            try Self.expectSameJSON(summary)
            #expect(GraphSummary(json: try #require(JSONParser.parse(Array(try JSONEncoder().encode(summary))))) == summary)
            let (body, _) = try WireFormat.encodeResult(summary)
            #expect(try WireFormat.decodeReply(GraphSummary.self, messageType: nil, body: body) == summary)
        }
        // A task in a state that does not exist: declined, and Foundation's reader says why.
        let bad = Array(
            #"{"value": {"instanceId": "g", "name": "n", "friendlyName": "f", "status": "running", "createdAt": "c", "tasks": {"t": {"label": "l", "name": "n", "state": "exploded"}}}}"#
                .utf8)
        #expect(GraphSummary(json: try #require(JSONParser.parse(bad))["value"] ?? .null) == nil)
        #expect(throws: BusError.self) { try WireFormat.decodeReply(GraphSummary.self, messageType: nil, body: bad) }
    }

    @Test("cancellations, task ends and graph events: written and read as Foundation does")
    func smallBodies() throws {
        for cancellation in [
            TaskCancellation(taskId: "t1"), TaskCancellation(taskId: "t1", errName: "TaskTimeoutError", errMessage: "late"),
        ] {
            try Self.expectSameJSON(cancellation)
            #expect(TaskCancellation(json: try #require(JSONParser.parse(Array(try JSONEncoder().encode(cancellation))))) == cancellation)
        }
        for event in [
            GraphEvent(graphId: "g1", graphName: "Test", status: "running", nodeId: nil),
            GraphEvent(graphId: "g1", graphName: "Test", status: "succeeded", nodeId: "n1"),
        ] {
            try Self.expectSameJSON(event)
            #expect(GraphEvent(json: try #require(JSONParser.parse(Array(try JSONEncoder().encode(event))))) == event)
        }
        for ended in [TasksEnded(taskIds: []), TasksEnded(taskIds: ["t1", "t \"2\""])] {
            try Self.expectSameJSON(ended)
            #expect(TasksEnded(json: try #require(JSONParser.parse(Array(try JSONEncoder().encode(ended))))) == ended)
        }
        #expect(TasksEnded(json: try #require(JSONParser.parse(Array(#"{"taskIds": ["t1", 2]}"#.utf8)))) == nil)
        #expect(TasksEnded(json: try #require(JSONParser.parse(Array(#"{"taskIds": "t1"}"#.utf8)))) == nil)
        try Self.expectSameJSON(GraphProgress(graphId: "g1", graphName: "Test", finishedTasks: 1, totalTasks: 10))
        try Self.expectSameJSON(
            GraphProgress(
                graphId: "g1", graphName: "Test", nodeId: "n1", finishedTasks: 2, totalTasks: 3, taskId: "t", label: "l",
                taskState: .timeout))
    }

    @Test("a graph's stored state and header: written as Foundation does, the state read back too")
    func storedGraph() throws {
        let definition = try GraphFixtures.decode(GraphDefinition.self, GraphFixtures.discoveryJSON)
        var branching = GraphFixtures.noopGraph(
            ["a", "b", "c"],
            waits: ["c": WaitOn(all: ["a": [.succeeded, .failed]], anyOf: ["a": [.finished], "b": [.timeout, .cancelled]])],
            ignoringFailure: ["b"], options: ["defaults": ["x": 1]])
        branching.serviceGraph = true
        for (definition, library) in [(definition, GraphFixtures.discoveryLibrary), (branching, GraphFixtures.library)] {
            let plan = try GraphCompiler.compile(definition, library: library, options: ["extra": "yes"])
            var run = GraphRun(plan: plan)
            _ = run.begin()
            let instance = GraphInstance(
                id: "g1", plan: plan, run: run, target: "node-1", context: ["graphId": "g1", "added": [1, 2]],
                taskIDs: Dictionary(uniqueKeysWithValues: plan.tasks.map { ($0.label, "id-\($0.label)") }), errors: ["a": "failed: x"],
                createdAt: Date(timeIntervalSinceReferenceDate: 786_000_000.125), idempotencyKey: "key-1")
            try Self.expectSameJSON(instance.header)
            try Self.expectSameJSON(instance.state)
            #expect(try JSONDecoder().decode(GraphInstance.Header.self, from: instance.header.encoded()) == instance.header)
            #expect(try GraphInstance.State.decoded(from: JSONEncoder().encode(instance.state)) == instance.state)
            #expect(
                GraphInstance.State(json: try #require(JSONParser.parse(Array(try JSONEncoder().encode(instance.state))))) == instance.state
            )
        }
    }

    @Test(
        "a body that lacks a field, or has one of another kind, is declined and left to JSONDecoder",
        arguments: ["taskId", "graphId", "graphName", "label", "taskName", "job", "options", "context", "timeoutMs"])
    func declinesIncomplete(field: String) throws {
        let spec = Self.specs[0]
        guard case .object(var members) = try #require(JSONParser.parse(Array(try JSONEncoder().encode(spec)))) else {
            Issue.record("not an object")
            return
        }
        let complete = members
        members[field] = nil
        #expect(TaskSpec(json: .object(members)) == nil)
        #expect(ScheduleRequest(json: .object(members)) == nil)
        #expect(RunMessage(json: .object(members)) == nil)
        members = complete
        members[field] = .array([])
        #expect(TaskSpec(json: .object(members)) == nil)
        if field != "options" && field != "context" { #expect(ScheduleRequest(json: .object(members)) == nil) }
        // What JSONDecoder then says.
        var writer = JSONWriter()
        members = complete
        members[field] = nil
        try writer.object(members)
        let error = #expect(throws: BusError.self) { try WireFormat.decode(TaskSpec.self, from: writer.bytes) }
        #expect(error?.message.contains("missing key '\(field)'") == true)
    }

    @Test("a time limit that is not a whole number is declined")
    func fractionalTimeout() throws {
        let body = Array(
            #"{"taskId":"t","graphId":"g","graphName":"n","label":"l","taskName":"T","job":"J","options":{},"context":{},"timeoutMs":1.5}"#
                .utf8)
        let parsed = try #require(JSONParser.parse(body))
        #expect(TaskSpec(json: parsed) == nil)
        #expect(ScheduleRequest(json: parsed) == nil)
        #expect(throws: BusError.self) { try WireFormat.decode(TaskSpec.self, from: body) }
    }

    @Test("a task's end in a state that does not exist is declined")
    func unknownState() throws {
        var writer = JSONWriter()
        writer.object(["taskId": "t", "taskName": "T", "label": "l", "graphId": "g", "graphName": "n", "state": "exploded"])
        #expect(TaskFinished(json: try #require(JSONParser.parse(writer.bytes))) == nil)
        #expect(throws: BusError.self) { try WireFormat.decode(TaskFinished.self, from: writer.bytes) }
    }
}
