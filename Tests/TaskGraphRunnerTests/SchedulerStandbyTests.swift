import BusCore
import BusTestSupport
import Foundation
import Scheduler
import Synchronization
import Testing

@testable import TaskGraphRunner

@Suite("Several Schedulers: one decides, the others stand by", .timeLimit(.minutes(2)))
struct SchedulerStandbyTests {
    /// The most tasks both Schedulers counted as running at once, sampled; and the hand-overs.
    /// (Their own counts, not the order of `run.*` and `task.finished.*` as a listener sees
    /// them: those come through two queues, and may arrive in either order.)
    final class Timeline: Sendable {
        private let most = Mutex(0)
        private let handedOver = Mutex(0)
        func sample(_ running: Int) { most.withLock { $0 = max($0, running) } }
        func recordHandOver() { handedOver.withLock { $0 += 1 } }
        var mostAtOnce: Int { most.withLock { $0 } }
        var started: Int { handedOver.withLock { $0 } }
    }

    @Test("two Schedulers with a limit of 1 run one task at a time, and the spare takes over when the active one goes")
    func oneLimitAndAHotSpare() async throws {
        let waiting = GraphDefinition(
            friendlyName: "short wait", injectableName: "Graph.Test.Standby",
            tasks: [GraphTask(label: "wait", taskName: "Task.Wait", optionOverrides: ["duration": 300])])
        try await TestBroker.withBus { bus in
            let runner = TaskGraphRunnerService(bus: bus, configuration: .init(database: ":memory:"), logger: TestBroker.logger)
            let first = SchedulerService(bus: bus, concurrency: 1, logger: TestBroker.logger)
            let second = SchedulerService(bus: bus, concurrency: 1, logger: TestBroker.logger)
            let handedOver = try await bus.subscribe(to: .task, patterns: ["run.*"], as: TaskSpec.self)
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            let timeline = Timeline()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await runner.run() }
                let firstScheduler = Task { try await first.run() }
                group.addTask { try await second.run() }
                group.addTask { for await _ in handedOver { timeline.recordHandOver() } }
                group.addTask {
                    while !Task.isCancelled {
                        // A spare counts the active one's tasks too: only the active one's count is the limit's.
                        timeline.sample(
                            (first.isActive ? first.runningCount : 0) + (second.isActive ? second.runningCount : 0))
                        try await Task.sleep(for: .milliseconds(5))
                    }
                }
                defer {
                    firstScheduler.cancel()
                    group.cancelAll()
                }
                await runner.waitUntilReady()
                _ = try await bus.call(DefineTaskGraph(definition: waiting))
                for _ in 0..<4 { _ = try await bus.call(RunTaskGraph(name: waiting.injectableName)) }
                let done = try await collect(finished, count: 4, timeout: .seconds(30))
                #expect(done.allSatisfy { $0.message.status == "succeeded" })
                #expect(timeline.mostAtOnce == 1, "one limit for both Schedulers")
                // The first goes (it may have been the active one or the spare): the other carries on.
                // Once both have heard every task end: `graph.finished` comes through another queue
                // than the Schedulers' `task.finished`, and may come first. (Taking over from a busy
                // one is the next test.)
                try await eventually { first.runningCount + second.runningCount == 0 }
                firstScheduler.cancel()
                _ = await firstScheduler.result
                for _ in 0..<2 { _ = try await bus.call(RunTaskGraph(name: waiting.injectableName)) }
                let more = try await collect(finished, count: 2, timeout: .seconds(30))
                #expect(more.allSatisfy { $0.message.status == "succeeded" })
                #expect(timeline.started == 6)
                #expect(timeline.mostAtOnce == 1)
            }
        }
    }

    @Test("a spare that takes over counts the task the active one left running, and starts the next only once it ends")
    func takeOverFromABusyScheduler() async throws {
        let slow = GraphDefinition(
            friendlyName: "2 s wait", injectableName: "Graph.Test.TakeOver",
            tasks: [GraphTask(label: "wait", taskName: "Task.Wait", optionOverrides: ["duration": 2000])])
        try await TestBroker.withBus { bus in
            let runner = TaskGraphRunnerService(bus: bus, configuration: .init(database: ":memory:"), logger: TestBroker.logger)
            let schedulers = (0..<2).map { _ in SchedulerService(bus: bus, concurrency: 1, logger: TestBroker.logger) }
            let handedOver = try await bus.subscribe(to: .task, patterns: ["run.*"], as: TaskSpec.self)
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await runner.run() }
                let running = schedulers.map { scheduler in Task { try await scheduler.run() } }
                defer {
                    for scheduler in running { scheduler.cancel() }
                    group.cancelAll()
                }
                await runner.waitUntilReady()
                for scheduler in schedulers { await scheduler.waitUntilReady() }
                _ = try await bus.call(DefineTaskGraph(definition: slow))
                let first = try await bus.call(RunTaskGraph(name: slow.injectableName))
                var handOvers = handedOver.makeAsyncIterator()
                #expect(await handOvers.next()?.message.graphId == first.instanceId)
                let firstStarted = ContinuousClock.now
                let active = try #require(schedulers.firstIndex { $0.isActive })
                let spare = schedulers[1 - active]
                // It watched the hand-over go by.
                try await eventually { spare.runningCount == 1 }
                running[active].cancel()
                _ = await running[active].result
                let second = try await bus.call(RunTaskGraph(name: slow.injectableName))
                #expect(await handOvers.next()?.message.graphId == second.instanceId)
                #expect(
                    ContinuousClock.now - firstStarted >= .milliseconds(1500),
                    "the spare started a second task while the first (2 s) still ran, beyond its limit of 1")
                #expect(spare.isActive)
                let done = try await collect(finished, count: 2, timeout: .seconds(30))
                #expect(done.allSatisfy { $0.message.status == "succeeded" })
            }
        }
    }
}
