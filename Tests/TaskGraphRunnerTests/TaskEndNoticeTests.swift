import BusCore
import BusTestSupport
import Foundation
import Scheduler
import Synchronization
import Testing

@testable import TaskGraphRunner

/// The Schedulers hear of task ends from the TaskGraphRunners (`tasks.ended`), not from a copy
/// of every `task.finished` report.
@Suite("Task ends reach the Schedulers in batches", .timeLimit(.minutes(1)))
struct TaskEndNoticeTests {
    final class Seen<Value: Sendable>: Sendable {
        let values = Mutex<[Value]>([])
        func append(_ value: Value) { values.withLock { $0.append(value) } }
        var all: [Value] { values.withLock { $0 } }
    }

    @Test("ends added while the sender waits go out as one tasks.ended, and each is settled as sent")
    func oneBatch() async throws {
        try await TestBroker.withBus { bus in
            let notices = try await bus.subscribe(to: .scheduler, patterns: [WorkflowKeys.tasksEnded], as: TasksEnded.self)
            let ends = TaskEndNotices(bus: bus, logger: TestBroker.logger)
            let settled = Seen<Bool>()
            let ids = (0..<50).map { "task-\($0)" }
            for id in ids { ends.add(id) { sent in settled.append(sent) } }
            let sender = Task { await ends.run() }
            defer { sender.cancel() }
            let received = try await collect(notices, count: 1)
            #expect(received.map(\.message.taskIds) == [ids])
            try await eventually { settled.all.count == ids.count }
            #expect(settled.all.allSatisfy { $0 })
            // Nothing else was sent.
            let more = try? await collect(notices, count: 1, timeout: .milliseconds(300))
            #expect(more == nil)
        }
    }

    @Test("every task of a graph is announced once its end is stored, and its report is acknowledged")
    func graphTasksAnnounced() async throws {
        try await TestBroker.withBus { bus in
            let runner = TaskGraphRunnerService(bus: bus, configuration: .init(database: ":memory:"), logger: TestBroker.logger)
            let scheduler = SchedulerService(bus: bus, concurrency: 4, logger: TestBroker.logger)
            let notices = try await bus.subscribe(to: .scheduler, patterns: [WorkflowKeys.tasksEnded], as: TasksEnded.self)
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await runner.run() }
                group.addTask { try await scheduler.run() }
                defer { group.cancelAll() }
                await runner.waitUntilReady()
                await scheduler.waitUntilReady()
                let graph = try await bus.call(RunTaskGraph(name: "Graph.Noop.Chain.10"))
                #expect(try await collect(finished, count: 1).map(\.message.status) == ["succeeded"])
                var announced: [String] = []
                var iterator = notices.makeAsyncIterator()
                while announced.count < graph.tasks.count, let notice = await iterator.next() {
                    announced += notice.message.taskIds
                }
                #expect(announced.sorted() == graph.tasks.keys.sorted())
                try await eventually { scheduler.runningCount == 0 }
            }
            // Stopped: a report it had not acknowledged would be back in the queue now.
            let queue = "\(bus.configuration.exchangePrefix).\(TaskGraphRunnerService.finishedQueueName)"
            try await eventually { try await bus.inspectQueue(named: queue).messages == 0 }
            let status = try await bus.inspectQueue(named: queue)
            #expect(status.messages == 0 && status.consumers == 0)
        }
    }

    @Test("a report that cannot be read but names its task frees that task's slot, and is dead-lettered")
    func unreadableReportFreesItsSlot() async throws {
        // Quorum work queues: a refused report goes to the dead-letter queue, where it shows. One
        // slot: a task that never ends would hold it for ever.
        try await withWorkflowServices(queues: .quorum, concurrency: 1) { bus, scheduler in
            let handedOver = try await bus.subscribe(to: .task, patterns: ["run.*"], as: TaskSpec.self)
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            let ended = Seen<String>()
            let listener = Task { for await event in finished { ended.append(event.message.graphId) } }
            defer { listener.cancel() }
            await scheduler.waitUntilReady()
            // A job nobody runs: its task holds the one slot until its report comes.
            let base = TaskDefinition(
                friendlyName: "nobody's", injectableName: "Task.Base.Test.Nobody", runJob: "Job.Test.Nobody", requiredOptions: [],
                requiredProperties: [:], properties: [:])
            _ = try await bus.call(DefineTask(definition: base))
            let task = TaskDefinition(
                friendlyName: "nobody's task", injectableName: "Task.Test.Nobody", implementsTask: base.injectableName, options: [:],
                properties: [:])
            _ = try await bus.call(DefineTask(definition: task))
            _ = try await bus.call(
                DefineTaskGraph(
                    definition: GraphDefinition(
                        friendlyName: "nobody's graph", injectableName: "Graph.Test.Nobody",
                        tasks: [GraphTask(label: "stuck", taskName: task.injectableName)])))
            _ = try await bus.call(RunTaskGraph(name: "Graph.Test.Nobody"))
            let stuck = try #require(try await collect(handedOver, count: 1).first?.message)
            // The slot is taken: a second graph waits.
            let second = try await bus.call(RunTaskGraph(name: "Graph.noop-example"))
            try await Task.sleep(for: .milliseconds(500))
            #expect(ended.all.isEmpty)
            #expect(scheduler.runningCount == 1)
            // A worker reports with a state no one knows.
            try await bus.publishRawConfirmed(
                body: Array(#"{"taskId": "\#(stuck.taskId)", "state": "exploded"}"#.utf8), toExchangeNamed: bus.name(of: .events),
                routingKey: WorkflowKeys.taskFinished(stuck.taskId), type: "Object", persistent: true)
            try await eventually { ended.all == [second.instanceId] }
            let queue = "\(bus.configuration.exchangePrefix).\(TaskGraphRunnerService.finishedQueueName)"
            try await eventually {
                try await bus.inspectQueue(named: BusConfiguration.deadLetterQueue(of: queue)).messages == 1
            }
        }
    }

    @Test("while no TaskGraphRunner is up, an ended task keeps its slot; the next one to start stores the report and frees it")
    func slotWaitsForATaskGraphRunner() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-ends-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = directory.appendingPathComponent("taskgraph.sqlite").path
        let waiting = GraphDefinition(
            friendlyName: "short wait", injectableName: "Graph.Test.EndsWait",
            tasks: [GraphTask(label: "wait", taskName: "Task.Wait", optionOverrides: ["duration": 500])])
        try await TestBroker.withBus { bus in
            // The runner apart from the engine, so that the engine can stop while the task runs.
            let runner = TaskRunner(bus: bus, logger: TestBroker.logger)
            let scheduler = SchedulerService(bus: bus, concurrency: 1, logger: TestBroker.logger)
            let finished = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await runner.run() }
                group.addTask { try await scheduler.run() }
                defer { group.cancelAll() }
                await scheduler.waitUntilReady()
                let engine = TaskGraphRunnerService(
                    bus: bus, configuration: .init(database: database, runsTasks: false), logger: TestBroker.logger)
                let first = Task { try await engine.run() }
                await engine.waitUntilReady()
                _ = try await bus.call(DefineTaskGraph(definition: waiting))
                let graph = try await bus.call(RunTaskGraph(name: waiting.injectableName))
                try await eventually { scheduler.runningCount == 1 }
                first.cancel()
                _ = await first.result
                // The task ends with no TaskGraphRunner up: its slot stays taken.
                #expect(try await collect(finished, count: 1, timeout: .seconds(10)).map(\.message.state) == [.succeeded])
                try await Task.sleep(for: .milliseconds(300))
                #expect(scheduler.runningCount == 1)
                let again = TaskGraphRunnerService(
                    bus: bus, configuration: .init(database: database, runsTasks: false), logger: TestBroker.logger)
                group.addTask { try await again.run() }
                try await eventually { scheduler.runningCount == 0 }
                let status = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId))).status
                #expect(status == "succeeded")
            }
        }
    }
}
