import BusCore
import BusTestSupport
import Foundation
import Testing

@testable import TaskGraphRunner

@Suite("Malformed run messages", .timeLimit(.minutes(1)))
struct MalformedRunTests {
    @Test("a run message that names its task but is not a TaskSpec fails the task with the reason; the runner keeps serving")
    func failsTheTask() async throws {
        try await withWorkflowServices { bus in
            let reports = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self)
            let graphs = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            func send(_ json: String, task: String) async throws {
                try await bus.publishRawConfirmed(
                    body: Array(json.utf8), toExchangeNamed: bus.name(of: .task), routingKey: "run.\(task)", type: "Object",
                    persistent: true)
            }
            // `options` is not an object.
            try await send(
                #"{"taskId":"bad-1","graphId":"g-x","graphName":"Graph.x","label":"l","taskName":"Task.noop","job":"Job.noop","options":"oops","context":{},"timeoutMs":0}"#,
                task: "bad-1")
            let report = try await collect(reports, count: 1)[0].message
            #expect(report.taskId == "bad-1" && report.graphId == "g-x" && report.label == "l")
            #expect(report.state == .failed)
            #expect(report.error?.hasPrefix("MalformedRunMessage: bad value at options") == true, "\(report.error ?? "")")

            // Missing context, no job: still this runner's to fail.
            try await send(#"{"taskId":"bad-2","graphId":"g-y","options":{},"timeoutMs":0}"#, task: "bad-2")
            let second = try await collect(reports, count: 1)[0].message
            #expect(second.taskId == "bad-2" && second.state == .failed)
            #expect(second.error?.contains("missing") == true, "\(second.error ?? "")")

            // An external worker's job, or no task id at all: not reported by this runner.
            try await send(#"{"taskId":"ext-1","graphId":"g-z","job":"Job.external.thing"}"#, task: "ext-1")
            try await send(#"{"job":"Job.noop"}"#, task: "anonymous")
            #expect(await drain(reports, for: .milliseconds(400)).isEmpty)

            // And a real graph still runs.
            _ = try await bus.call(RunTaskGraph(name: "Graph.noop-example", target: "after-malformed"))
            #expect(try await finishedStatus(graphs) == "succeeded")
        }
    }
}
