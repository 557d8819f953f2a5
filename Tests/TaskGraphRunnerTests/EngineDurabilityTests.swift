import BusCore
import BusTestSupport
import Foundation
import Scheduler
import Synchronization
import Testing

@testable import TaskGraphRunner

@Suite("The engine acknowledges only what it stored, and retries work it could not hand on", .timeLimit(.minutes(1)))
struct EngineDurabilityTests {
    /// Whether writes of a finished task's state fail, and how many did.
    final class WriteFaults: Sendable {
        let failing = Mutex(true)
        let failures = Mutex(0)
    }

    @Test("a report whose write fails is redelivered; the failed write changed neither memory nor the store")
    func failedWriteIsRedelivered() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-engine-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = directory.appendingPathComponent("tg.sqlite").path
        let faults = WriteFaults()
        let engineFaults = EngineFaults(write: { instance in
            // Only the writes that record a finished task fail; creating the graph succeeds.
            guard instance.run.states.values.contains(where: \.isFinished), faults.failing.withLock({ $0 }) else { return }
            faults.failures.withLock { $0 += 1 }
            throw TestFailure("injected write failure")
        })
        try await TestBroker.withBus { bus in
            let runner = TaskGraphRunnerService(
                bus: bus, configuration: .init(database: database), logger: TestBroker.logger, faults: engineFaults)
            let scheduler = SchedulerService(bus: bus, logger: TestBroker.logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await runner.run() }
                group.addTask { try await scheduler.run() }
                defer { group.cancelAll() }
                await runner.waitUntilReady()
                let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
                let graph = try await bus.call(RunTaskGraph(name: "Graph.noop-example", target: "write-fault-node"))
                // Failed twice: the first report was handed back by the broker, not acknowledged and lost.
                let deadline = ContinuousClock.now + .seconds(10)
                while faults.failures.withLock({ $0 }) < 2, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(faults.failures.withLock { $0 } >= 2, "the report came back after its write failed")
                let properties = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
                #expect(properties.tasks["noop-1"]?.state == .running, "memory is unchanged by a failed write")
                let stored = try await SQLiteGraphStore.open(path: database).graph(id: graph.instanceId)
                #expect(stored?.run.states["noop-1"] == .running, "the store is unchanged by a failed write")
                faults.failing.withLock { $0 = false }
                #expect(try await finishedStatus(finished) == "succeeded")
                let after = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
                #expect(after.tasks.values.allSatisfy { $0.state == .succeeded })
            }
        }
    }

    @Test("a schedule publish that fails is retried until it goes through, and the graph finishes")
    func failedSchedulePublishIsRetried() async throws {
        try await TestBroker.withBus { bus in
            let runner = TaskGraphRunnerService(bus: bus, configuration: .init(database: ":memory:"), logger: TestBroker.logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await runner.run() }
                defer { group.cancelAll() }
                await runner.waitUntilReady()
                let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
                // No queue takes `schedule` now: the broker refuses the publish (it would otherwise drop it).
                let queue = WorkflowQueues.name(WorkflowQueues.scheduler, prefix: bus.configuration.exchangePrefix)
                try await bus.deleteQueue(named: queue)
                let graph = try await bus.call(RunTaskGraph(name: "Graph.noop-example", target: "retry-node"))
                try await Task.sleep(for: .seconds(1))
                let properties = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
                #expect(properties.status == "running")
                // The Scheduler comes up and declares its queue: the retried publish reaches it.
                let scheduler = SchedulerService(bus: bus, logger: TestBroker.logger)
                group.addTask { try await scheduler.run() }
                #expect(try await finishedStatus(finished, timeout: .seconds(20)) == "succeeded")
            }
        }
    }
}

@Suite("Failed sends wait their turn")
struct OutboxBackoffTests {
    @Test("the backoff doubles from 100 ms and stops at 2 s")
    func backoff() {
        #expect(OutboxMessage.retryDelay(afterFailures: 1) == .milliseconds(100))
        #expect(OutboxMessage.retryDelay(afterFailures: 2) == .milliseconds(200))
        #expect(OutboxMessage.retryDelay(afterFailures: 4) == .milliseconds(800))
        #expect(OutboxMessage.retryDelay(afterFailures: 6) == .seconds(2))
        #expect(OutboxMessage.retryDelay(afterFailures: Int.max) == .seconds(2))
    }
}
