import BusCore
import BusTestSupport
import Foundation
import Synchronization
import Testing

@testable import TaskGraphRunner

/// The task ids a ``CountingJob`` was started with, in order.
final class JobStarts: Sendable {
    let ids = Mutex<[String]>([])
}

/// Records each start, then runs for `milliseconds`, long enough for duplicates to arrive meanwhile.
struct CountingJob: Job {
    static let name = "Job.Test.CountStarts"
    let starts: JobStarts
    var milliseconds = 300

    func run(_ context: JobContext) async throws -> [String: JSONValue] {
        starts.ids.withLock { $0.append(context.task.taskId) }
        try await Task.sleep(for: .milliseconds(milliseconds))
        return [:]
    }
}

@Suite("Each task runs once", .timeLimit(.minutes(1)))
struct RunOnceTests {
    @Test("the same run delivered twice back to back, and again once finished, starts the job once", arguments: [false, true])
    func duplicateRuns(withJournal: Bool) async throws {
        let starts = JobStarts()
        let journal: SQLiteGraphStore? = withJournal ? try await SQLiteGraphStore.open(path: ":memory:") : nil
        try await TestBroker.withBus { bus in
            // The runners' queue exists before anything is published, so nothing is lost before the runner consumes.
            try await bus.declareWorkQueue(
                named: WorkflowQueues.name(TaskRunner.queueName, prefix: bus.configuration.exchangePrefix),
                bindings: WorkflowQueues.taskRunnerBindings)
            let reports = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self)
            let runner = TaskRunner(bus: bus, jobs: [CountingJob(starts: starts)], journal: journal, logger: TestBroker.logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await runner.run() }
                defer { group.cancelAll() }
                let spec = TaskSpec(
                    taskId: "once-\(UUID().uuidString.prefix(8))", graphId: "g-once", graphName: "Graph.Test.Once", label: "once",
                    taskName: "Task.Test.Once", job: CountingJob.name, options: [:], context: [:], nodeId: nil, timeoutMs: 0)
                for _ in 0..<2 {
                    try await bus.publishConfirmed(spec, to: .task, routingKey: WorkflowKeys.run(spec.taskId), persistent: true)
                }
                let first = try await collect(reports, count: 1)
                #expect(first.map(\.message.state) == [.succeeded])
                try await bus.publishConfirmed(spec, to: .task, routingKey: WorkflowKeys.run(spec.taskId), persistent: true)
                let later = await drain(reports, for: .milliseconds(800))
                #expect(starts.ids.withLock { $0 } == [spec.taskId], "one start for three deliveries")
                if withJournal {
                    // A finished task's stored report is published again, not run again.
                    #expect(later.count == 1 && later.allSatisfy { $0.message.state == .succeeded })
                }
            }
        }
    }

    @Test("claims: a claimed or finished task is never started again; a released one may be")
    func claims() {
        var claims = TaskClaims(rememberingFinished: 2)
        #expect(claims.claim("a") == .start)
        #expect(claims.claim("a") == .running)
        claims.finish("a")
        #expect(claims.claim("a") == .finished)
        #expect(claims.claim("b") == .start)
        claims.release("b")
        #expect(claims.claim("b") == .start)
        claims.finish("b")
        for id in ["c", "d", "e", "f"] {
            #expect(claims.claim(id) == .start)
            claims.finish(id)
        }
        // Bounded: the oldest finished ids are forgotten (the durable journal still knows them).
        #expect(claims.claim("a") == .start)
        #expect(claims.claim("f") == .finished)
        #expect(claims.finishedCount <= 4)
    }
}
