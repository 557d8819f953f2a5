import BusCore
import BusTestSupport
import Foundation
import Scheduler
import Testing

@testable import TaskGraphRunner

@Suite("Services started in any order", .timeLimit(.minutes(1)))
struct StartOrderTests {
    @Test("a graph started before any Scheduler is up waits for one, then succeeds")
    func schedulerStartsLater() async throws {
        try await TestBroker.withBus { bus in
            let runner = TaskGraphRunnerService(bus: bus, configuration: .init(database: ":memory:"), logger: TestBroker.logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                defer { group.cancelAll() }
                group.addTask { try await runner.run() }
                await runner.waitUntilReady()
                let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
                _ = try await bus.call(RunTaskGraph(name: "Graph.noop-example", target: "early-node"))
                try await Task.sleep(for: .milliseconds(500))
                // The first task's `schedule` request waits in the Schedulers' queue.
                let waiting = try await bus.inspectQueue(
                    named: WorkflowQueues.name(WorkflowQueues.scheduler, prefix: bus.configuration.exchangePrefix))
                #expect(waiting.messages == 1)
                let scheduler = SchedulerService(bus: bus, logger: TestBroker.logger)
                group.addTask { try await scheduler.run() }
                #expect(try await finishedStatus(finished) == "succeeded")
            }
        }
    }

    @Test("declareWorkQueue keeps messages for a consumer that comes later")
    func declaredQueueKeepsWork() async throws {
        try await TestBroker.withBus { bus in
            let queue = "\(bus.configuration.exchangePrefix).later"
            try await bus.declareWorkQueue(named: queue, bindings: [(.scheduler, "later.#")])
            // Twice is fine: the declaration is idempotent.
            try await bus.declareWorkQueue(named: queue, bindings: [(.scheduler, "later.#")])
            try await bus.publishConfirmed(["n": 1], to: .scheduler, routingKey: "later.one", persistent: true, mandatory: true)
            #expect(try await bus.inspectQueue(named: queue).messages == 1)
            let consumer = try await bus.workQueue(named: queue, bindings: [(.scheduler, "later.#")], as: [String: Int].self)
            let delivery = try await collect(consumer, count: 1)[0]
            #expect(delivery.message == ["n": 1])
            delivery.ack()
            try await bus.deleteQueue(named: queue)
        }
    }
}
