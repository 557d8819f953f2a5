import BusCore
import BusTestSupport
import Foundation
import Metrics
import Scheduler
import Testing

@testable import TaskGraphRunner

/// A runner looks in its finished-task journal only for hand-overs that may repeat an earlier
/// one, so every path that can repeat one has to say so (``WorkflowHeaders/repeated``).
@Suite("Repeated hand-overs are marked, and a marked one of a finished task is not run again", .timeLimit(.minutes(1)))
struct RepeatedHandOverTests {

    @Test("a repeated run of a task that finished before a restart is answered from the journal, not run")
    func repeatedRunAfterRestart() async throws {
        let starts = JobStarts()
        let journal = try await SQLiteGraphStore.open(path: ":memory:")
        try await TestBroker.withBus { bus in
            try await bus.declareWorkQueue(
                named: WorkflowQueues.name(TaskRunner.queueName, prefix: bus.configuration.exchangePrefix),
                bindings: WorkflowQueues.taskRunnerBindings)
            let reports = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self)
            let spec = countingSpec("restart")
            // Each runner is a process's: the second knows nothing of the first but the journal.
            for (attempt, headers) in [[:], [WorkflowHeaders.repeated: HeaderValue.bool(true)]].enumerated() {
                let runner = TaskRunner(
                    bus: bus, jobs: [CountingJob(starts: starts, milliseconds: 10)], journal: journal, logger: TestBroker.logger)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await runner.run() }
                    defer { group.cancelAll() }
                    try await bus.publishRawConfirmed(
                        body: try WireFormat.encode(spec), toExchangeNamed: bus.name(of: .task), routingKey: WorkflowKeys.run(spec.taskId),
                        type: TaskSpec.payloadType, persistent: true, headers: headers)
                    let reported = try await collect(reports, count: 1)
                    #expect(reported.map(\.message.state) == [.succeeded], "attempt \(attempt)")
                }
            }
            #expect(starts.ids.withLock { $0 } == [spec.taskId], "run once; the repeat was answered with the stored report")
        }
    }

    @Test("the Scheduler marks a hand-over repeated when its request was marked, or names a task it handed on already")
    func schedulerMarksRepeats() async throws {
        try await TestBroker.withBus { bus in
            let scheduler = SchedulerService(bus: bus, logger: TestBroker.logger)
            let runs = try await bus.subscribe(to: .task, patterns: ["run.*"], as: TaskSpec.self)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await scheduler.run() }
                defer { group.cancelAll() }
                await scheduler.waitUntilReady()
                // External jobs: no runner here takes them, so each stays running in the Scheduler's count.
                let (first, marked) = (countingSpec("first", job: "Job.Test.Nobody"), countingSpec("marked", job: "Job.Test.Nobody"))
                let requests: [(TaskSpec, [String: HeaderValue])] = [
                    (first, [:]), (first, [:]), (marked, [WorkflowHeaders.repeated: .bool(true)]),
                ]
                for (spec, headers) in requests {
                    try await bus.publishRawConfirmed(
                        body: try WireFormat.encode(spec), toExchangeNamed: bus.name(of: .scheduler), routingKey: WorkflowKeys.schedule,
                        type: TaskSpec.payloadType, persistent: true, headers: headers)
                }
                let handedOver = try await collect(runs, count: 3)
                let marks = handedOver.map { ($0.message.taskId, WorkflowHeaders.isRepeated($0)) }
                #expect(marks.filter { $0.0 == first.taskId }.map(\.1).sorted { !$0 && $1 } == [false, true])
                #expect(marks.filter { $0.0 == marked.taskId }.map(\.1) == [true])
            }
        }
    }

    @Test("the outbox marks a message that it sends again, not one sent the first time")
    func outboxMarksResends() async throws {
        let store = try await SQLiteGraphStore.open(path: ":memory:")
        try await TestBroker.withBus { bus in
            let exchange = bus.name(of: .scheduler)
            let sent = try await bus.subscribe(toExchangeNamed: exchange, patterns: ["test.outbox.*"], as: JSONValue.self)
            let relay = OutboxRelay(bus: bus, store: store, logger: TestBroker.logger, resent: Counter(label: "test.resent"))
            let messages = [0, 1, 3].map { attempts in
                OutboxMessage(
                    id: UUID().uuidString, graphId: "g-outbox", exchange: exchange, routingKey: "test.outbox.\(attempts)", type: "Object",
                    body: Array("{}".utf8), persistent: false, mandatory: true, onlyWhileGraphActive: false, attempts: attempts)
            }
            relay.send(messages)
            let received = try await collect(sent, count: 3)
            let marked = Dictionary(uniqueKeysWithValues: received.map { ($0.routingKey, WorkflowHeaders.isRepeated($0)) })
            #expect(marked == ["test.outbox.0": false, "test.outbox.1": true, "test.outbox.3": true])
        }
    }
}
