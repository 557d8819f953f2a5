import BusCore
import BusTestSupport
import Foundation
import Scheduler
import Synchronization
import Testing

@testable import TaskGraphRunner

@Suite("Several Schedulers: one decides, the others stand by", .timeLimit(.minutes(2)))
struct SchedulerStandbyTests {
    /// Hand-overs (`run.*`) and reports (`task.finished.*`) in the order they arrived.
    final class Timeline: Sendable {
        private let events = Mutex<[(task: String, started: Bool)]>([])
        func record(task: String, started: Bool) { events.withLock { $0.append((task, started)) } }
        /// The most tasks that were handed over and not yet reported at any moment.
        var mostAtOnce: Int {
            events.withLock { events in
                var running: Set<String> = []
                var most = 0
                for event in events {
                    if event.started { running.insert(event.task) } else { running.remove(event.task) }
                    most = max(most, running.count)
                }
                return most
            }
        }
        var started: Int { events.withLock { $0.filter(\.started).count } }
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
            let reports = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self)
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            let timeline = Timeline()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await runner.run() }
                let firstScheduler = Task { try await first.run() }
                group.addTask { try await second.run() }
                group.addTask { for await run in handedOver { timeline.record(task: run.message.taskId, started: true) } }
                group.addTask { for await report in reports { timeline.record(task: report.message.taskId, started: false) } }
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
}
