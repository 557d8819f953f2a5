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

/// A run of `job` (``CountingJob`` unless named) for task `<name>-<random>` of graph `g-<name>`.
func countingSpec(_ name: String, job: String = CountingJob.name) -> TaskSpec {
    TaskSpec(
        taskId: "\(name)-\(UUID().uuidString.prefix(8))", graphId: "g-\(name)", graphName: "Graph.Test.\(name)", label: name,
        taskName: "Task.Test.\(name)", job: job, options: [:], context: [:], nodeId: nil, timeoutMs: 0)
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
                let spec = countingSpec("once")
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

    @Test("two runners in different processes share a PostgreSQL journal: a run delivered to both starts once")
    func runnersSharingAJournal() async throws {
        let starts = JobStarts()
        try await withSharedJournal { bus, journal, reports in
            // Two runners, as two processes would have: each with its own claims in memory.
            let runners = (0..<2).map { _ in
                TaskRunner(
                    bus: bus, jobs: [CountingJob(starts: starts, milliseconds: 1500)], journal: journal, logger: TestBroker.logger)
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for runner in runners { group.addTask { try await runner.run() } }
                defer { group.cancelAll() }
                let spec = countingSpec("shared")
                // Round robin: the second copy goes to the other runner while the first runs.
                for _ in 0..<2 {
                    try await bus.publishConfirmed(spec, to: .task, routingKey: WorkflowKeys.run(spec.taskId), persistent: true)
                }
                let reported = try await collect(reports, count: 1, timeout: .seconds(10))
                #expect(reported.map(\.message.state) == [.succeeded])
                // The copy that waited is dropped by the runner that ran it, or answered with the
                // stored report by the other: never run.
                let again = await drain(reports, for: .seconds(3))
                #expect(again.allSatisfy { $0.message.state == .succeeded })
                #expect(starts.ids.withLock { $0 } == [spec.taskId], "one start for two deliveries to two runners")
            }
        }
    }

    @Test("a cancelled job's end is recorded in a PostgreSQL journal too, although its task was cancelled")
    func cancelledJobIsJournaled() async throws {
        let starts = JobStarts()
        try await withSharedJournal { bus, journal, reports in
            let runner = TaskRunner(
                bus: bus, jobs: [CountingJob(starts: starts, milliseconds: 30_000)], journal: journal, logger: TestBroker.logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await runner.run() }
                defer { group.cancelAll() }
                let spec = countingSpec("cancelled")
                try await bus.publishConfirmed(spec, to: .task, routingKey: WorkflowKeys.run(spec.taskId), persistent: true)
                try await eventually { starts.ids.withLock { $0 } == [spec.taskId] }
                try await bus.publishConfirmed(
                    TaskCancellation(taskId: spec.taskId, errName: "TaskCancellationError", errMessage: "graph cancelled"), to: .task,
                    routingKey: WorkflowKeys.cancel(spec.taskId), persistent: true)
                let reported = try await collect(reports, count: 1, timeout: .seconds(10))
                #expect(reported.map(\.message.state) == [.cancelled])
                // The database's pool refuses work to a cancelled task: the end was stored from another.
                #expect(try await journal.finishedReport(taskId: spec.taskId)?.state == .cancelled)
            }
        }
    }

    @Test("a task claimed by a runner that died runs once the dead runner's lease has run out, not before")
    func deadRunnersClaimExpires() async throws {
        let starts = JobStarts()
        try await withSharedJournal { bus, journal, reports in
            let runner = TaskRunner(
                bus: bus, jobs: [CountingJob(starts: starts, milliseconds: 10)], journal: journal, logger: TestBroker.logger)
            let spec = countingSpec("orphan")
            // A runner claimed it and was killed: it renews nothing any more.
            #expect(try await journal.claimTask(spec.taskId, owner: "killed-runner", lease: .seconds(3)))
            let published = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await runner.run() }
                defer { group.cancelAll() }
                try await bus.publishConfirmed(spec, to: .task, routingKey: WorkflowKeys.run(spec.taskId), persistent: true)
                let reported = try await collect(reports, count: 1, timeout: .seconds(15))
                #expect(reported.map(\.message.state) == [.succeeded])
                #expect(ContinuousClock.now - published >= .seconds(2.5), "not started while the dead runner's claim held")
                #expect(starts.ids.withLock { $0 } == [spec.taskId])
            }
        }
    }

    /// A bus, a PostgreSQL journal of its own, the runners' queue (so nothing published before a
    /// runner consumes is lost) and the task reports, for `body`.
    func withSharedJournal(
        _ body: @Sendable (MessageBus, any GraphStore, Subscription<TaskFinished>) async throws -> Void
    ) async throws {
        try await withGraphStore(.postgres) { journal in
            try await TestBroker.withBus { bus in
                try await bus.declareWorkQueue(
                    named: WorkflowQueues.name(TaskRunner.queueName, prefix: bus.configuration.exchangePrefix),
                    bindings: WorkflowQueues.taskRunnerBindings)
                let reports = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self)
                try await body(bus, journal, reports)
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

    @Test("claims: a cancel before the claim is kept for it, once; none is kept for a task claimed or finished, and few are kept")
    func earlyCancellations() {
        var claims = TaskClaims(rememberingFinished: 2)
        claims.cancelledBeforeClaim("a", reason: "TaskTimeoutError")
        #expect(claims.takeEarlyCancellation("a") == "TaskTimeoutError")
        #expect(claims.takeEarlyCancellation("a") == nil)
        #expect(claims.claim("b") == .start)
        claims.cancelledBeforeClaim("b", reason: "TaskCancellationError")
        #expect(claims.takeEarlyCancellation("b") == nil, "a claimed task is cancelled where it runs")
        claims.finish("b")
        claims.cancelledBeforeClaim("b", reason: "TaskCancellationError")
        #expect(claims.takeEarlyCancellation("b") == nil)
        for id in ["c", "d", "e", "f", "g"] { claims.cancelledBeforeClaim(id, reason: "TaskCancellationError") }
        // Bounded: the oldest are forgotten (their runs went to other runners).
        #expect(claims.takeEarlyCancellation("c") == nil)
        #expect(claims.takeEarlyCancellation("g") == "TaskCancellationError")
    }

    @Test("a cancel that comes before its task's run cancels the task as soon as the run comes")
    func cancelBeforeRun() async throws {
        let starts = JobStarts()
        try await TestBroker.withBus { bus in
            let queue = WorkflowQueues.name(TaskRunner.queueName, prefix: bus.configuration.exchangePrefix)
            try await bus.declareWorkQueue(named: queue, bindings: WorkflowQueues.taskRunnerBindings)
            let reports = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self)
            let runner = TaskRunner(bus: bus, jobs: [CountingJob(starts: starts, milliseconds: 30_000)], logger: TestBroker.logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await runner.run() }
                defer { group.cancelAll() }
                // It consumes its queue once it hears cancels.
                try await eventually { try await bus.inspectQueue(named: queue).consumers == 1 }
                let spec = countingSpec("early")
                try await bus.publishConfirmed(
                    TaskCancellation(taskId: spec.taskId, errName: "TaskCancellationError", errMessage: "graph cancelled"), to: .task,
                    routingKey: WorkflowKeys.cancel(spec.taskId), persistent: true)
                try await Task.sleep(for: .milliseconds(300))
                try await bus.publishConfirmed(spec, to: .task, routingKey: WorkflowKeys.run(spec.taskId), persistent: true)
                // Without the kept cancel, the job would run its 30 s.
                let report = try await collect(reports, count: 1, timeout: .seconds(5))[0].message
                #expect(report.taskId == spec.taskId)
                #expect(report.state == .cancelled)
                #expect(report.error == "TaskCancellationError")
            }
        }
    }
}
