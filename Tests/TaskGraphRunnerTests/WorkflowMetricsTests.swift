import BusCore
import BusTestSupport
import Foundation
import MetricsTestKit
import Testing

@testable import Scheduler
@testable import TaskGraphRunner

@Suite("Workflow metrics", .timeLimit(.minutes(2)))
struct WorkflowMetricsTests {
    /// Runs a TaskGraphRunner and a Scheduler that count into `metrics`.
    func withCountedServices(_ metrics: TestMetrics, _ body: @Sendable (MessageBus) async throws -> Void) async throws {
        try await TestBroker.withBus { bus in
            let runner = TaskGraphRunnerService(
                bus: bus, configuration: .init(database: ":memory:"), logger: TestBroker.logger, faults: nil, metricsFactory: metrics)
            let scheduler = SchedulerService(bus: bus, concurrency: 8, logger: TestBroker.logger, metricsFactory: metrics)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await runner.run() }
                group.addTask { try await scheduler.run() }
                defer { group.cancelAll() }
                await runner.waitUntilReady()
                await scheduler.waitUntilReady()
                try await body(bus)
            }
        }
    }

    @Test("graphs started and finished by status, tasks finished by state, job durations, the Scheduler's gauges")
    func graphsAndTasks() async throws {
        let metrics = TestMetrics()
        try await withCountedServices(metrics) { bus in
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            let failing = GraphDefinition(
                friendlyName: "too slow", injectableName: "Graph.Test.MetricsTimeout",
                tasks: [GraphTask(label: "slow", taskName: "Task.Wait", optionOverrides: ["duration": 30000, "_taskTimeout": 300])])
            _ = try await bus.call(DefineTaskGraph(definition: failing))
            let noop = try await bus.call(RunTaskGraph(name: "Graph.noop-example"))
            #expect(try await finishedStatus(finished) == "succeeded")
            _ = try await bus.call(RunTaskGraph(name: failing.injectableName))
            #expect(try await finishedStatus(finished) == "failed")

            #expect(try metrics.expectCounter("rackbus_graphs_started_total").totalValue == 2)
            #expect(try metrics.expectCounter("rackbus_graphs_finished_total", [("status", "succeeded")]).totalValue == 1)
            #expect(try metrics.expectCounter("rackbus_graphs_finished_total", [("status", "failed")]).totalValue == 1)
            let tasks = noop.tasks.count
            #expect(try metrics.expectCounter("rackbus_tasks_finished_total", [("state", "succeeded")]).totalValue == tasks)
            #expect(try metrics.expectCounter("rackbus_tasks_finished_total", [("state", "timeout")]).totalValue == 1)
            #expect(try metrics.expectTimer("rackbus_task_duration_seconds", [("job", "Job.noop")]).values.count == tasks)
            let waited = try metrics.expectTimer("rackbus_task_duration_seconds", [("job", "Job.Wait")]).values
            // Ended by the timeout (the Scheduler's clock starts at the hand-over, before the job's),
            // long before its 30 s wait.
            #expect(waited.count == 1 && waited[0] > 0 && waited[0] < 30_000_000_000, "\(waited)")
            // Sampled every 100 ms: all ended, nothing waits, and this one is active. The timeout
            // counts here if the Scheduler's deadline came before the runner's own watch ended it.
            try await eventually {
                (try? metrics.expectGauge("rackbus_scheduler_running_tasks").lastValue) == 0
                    && (try? metrics.expectGauge("rackbus_scheduler_waiting_requests").lastValue) == 0
                    && (try? metrics.expectGauge("rackbus_scheduler_active").lastValue) == 1
            }
            #expect(try metrics.expectCounter("rackbus_scheduler_timeouts_total").totalValue <= 1)
            #expect(try metrics.expectCounter("rackbus_outbox_resent_total").totalValue == 0, "every message went out first time")
        }
    }

    @Test("a task that no runner here runs times out at the Scheduler, which counts it")
    func schedulerTimeout() async throws {
        let metrics = TestMetrics()
        try await withCountedServices(metrics) { bus in
            let base = TaskDefinition(
                friendlyName: "nobody runs it", injectableName: "Task.Base.Test.Nobody", runJob: "Job.Test.Nobody",
                requiredOptions: [], requiredProperties: [:], properties: [:])
            _ = try await bus.call(DefineTask(definition: base))
            let task = TaskDefinition(
                friendlyName: "nobody runs it", injectableName: "Task.Test.Nobody", implementsTask: "Task.Base.Test.Nobody", options: [:],
                properties: [:])
            _ = try await bus.call(DefineTask(definition: task))
            let graph = GraphDefinition(
                friendlyName: "unrun", injectableName: "Graph.Test.Unrun",
                tasks: [GraphTask(label: "unrun", taskName: "Task.Test.Nobody", optionOverrides: ["_taskTimeout": 200])])
            _ = try await bus.call(DefineTaskGraph(definition: graph))
            let run = try await bus.call(RunTaskGraph(name: graph.injectableName))
            try await eventually { (try? metrics.expectCounter("rackbus_scheduler_timeouts_total").totalValue) == 1 }
            _ = try await bus.call(CancelTaskGraph(filter: GraphFilter(instanceId: run.instanceId)))
        }
    }
}
