import BusCore
import BusTestSupport
import Foundation
import Scheduler
import Testing

@testable import TaskGraphRunner

/// Runs a bus, a TaskGraphRunner (with its task runner) and a Scheduler for `body`, the runner on
/// SQLite (`database`) or on a PostgreSQL database of its own.
func withWorkflowServices<Result: Sendable>(
    database: String = ":memory:", store: StoreKind = .sqlite, queues: BusConfiguration.WorkQueueType = .classic, concurrency: Int = 64,
    _ body: @Sendable (MessageBus) async throws -> Result
) async throws -> Result {
    try await withWorkflowServices(database: database, store: store, queues: queues, concurrency: concurrency) { bus, _ in
        try await body(bus)
    }
}

/// ``withWorkflowServices(database:store:queues:concurrency:_:)`` for a `body` that watches the Scheduler too.
func withWorkflowServices<Result: Sendable>(
    database: String = ":memory:", store: StoreKind = .sqlite, queues: BusConfiguration.WorkQueueType = .classic, concurrency: Int = 64,
    _ body: @Sendable (MessageBus, SchedulerService) async throws -> Result
) async throws -> Result {
    guard store == .sqlite else {
        return try await TestPostgres.withDatabase { url in
            try await withWorkflowServices(database: url, queues: queues, concurrency: concurrency, body)
        }
    }
    var configuration = try TestBroker.configuration()
    configuration.workQueueType = queues
    return try await TestBroker.withBus(configuration) { bus in
        let runner = TaskGraphRunnerService(bus: bus, configuration: .init(database: database), logger: TestBroker.logger)
        let scheduler = SchedulerService(bus: bus, concurrency: concurrency, logger: TestBroker.logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await runner.run() }
            group.addTask { try await scheduler.run() }
            defer { group.cancelAll() }
            await runner.waitUntilReady()
            return try await body(bus, scheduler)
        }
    }
}

/// Waits for `graph.finished.<id>` and returns its status.
func finishedStatus(_ events: Subscription<GraphEvent>, timeout: Duration = .seconds(30)) async throws -> String {
    try await collect(events, count: 1, timeout: timeout)[0].message.status
}

@Suite("Workflows end to end over the real broker", .timeLimit(.minutes(2)))
struct WorkflowTests {
    @Test("RackHD's Graph.noop-example runs to success through Scheduler and task runner", arguments: StoreKind.allCases)
    func noopExample(store: StoreKind) async throws {
        try await withWorkflowServices(store: store) { bus in
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            let tasks = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self)
            let graph = try await bus.call(RunTaskGraph(name: "Graph.noop-example", target: "node-1"))
            #expect(graph.status == "running")
            #expect(graph.tasks.count == 4)
            let created = try #require(ISO8601DateFormatter().date(from: graph.createdAt), "createdAt is ISO 8601: \(graph.createdAt)")
            #expect(abs(created.timeIntervalSinceNow) < 60)
            #expect(try await finishedStatus(finished) == "succeeded")
            let reports = try await collect(tasks, count: 4)
            #expect(Set(reports.map(\.message.label)) == ["noop-1", "noop-2", "parallel-noop-1", "parallel-noop-2"])
            #expect(reports.allSatisfy { $0.message.state == .succeeded })
            // The order respects waitOn.
            #expect(reports[0].message.label == "noop-1")
            #expect(reports[1].message.label == "noop-2")
            let properties = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
            #expect(properties.status == "succeeded")
            #expect(properties.tasks.values.allSatisfy { $0.state == .succeeded })
            #expect(properties.context["target"] == "node-1")
        }
    }

    @Test("only one active graph per node, with RackHD's error", arguments: StoreKind.allCases)
    func oneGraphPerNode(store: StoreKind) async throws {
        try await withWorkflowServices(store: store) { bus in
            let wait = GraphDefinition(
                friendlyName: "wait", injectableName: "Graph.Test.Wait",
                tasks: [GraphTask(label: "wait", taskName: "Task.Wait", optionOverrides: ["duration": 600_000])])
            #expect(try await bus.call(DefineTaskGraph(definition: wait)) == "Graph.Test.Wait")
            let first = try await bus.call(RunTaskGraph(name: "Graph.Test.Wait", target: "node-2"))
            let error = await #expect(throws: BusError.self) {
                _ = try await bus.call(RunTaskGraph(name: "Graph.noop-example", target: "node-2"))
            }
            #expect(error?.status == 400)
            #expect(error?.remote?.message == "Unable to run multiple task graphs against a single target.")
            let active = try await bus.call(GetActiveTaskGraph(filter: GraphFilter(target: "node-2")))
            #expect(active?.instanceId == first.instanceId)
            #expect(try await bus.call(CancelTaskGraph(filter: GraphFilter(instanceId: first.instanceId))) == first.instanceId)
            #expect(try await bus.call(GetActiveTaskGraph(filter: GraphFilter(target: "node-2"))) == nil)
        }
    }

    @Test("cancel stops a running task and ends the graph cancelled", arguments: StoreKind.allCases)
    func cancel(store: StoreKind) async throws {
        try await withWorkflowServices(store: store) { bus in
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            let tasks = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self)
            let wait = GraphDefinition(
                friendlyName: "wait then noop", injectableName: "Graph.Test.Cancel",
                tasks: [
                    GraphTask(label: "wait", taskName: "Task.Wait", optionOverrides: ["duration": 30000]),
                    GraphTask(label: "after", taskName: "Task.noop", waitOn: WaitOn(all: ["wait": [.finished]])),
                ])
            _ = try await bus.call(DefineTaskGraph(definition: wait))
            let graph = try await bus.call(RunTaskGraph(name: "Graph.Test.Cancel", target: "node-3"))
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await bus.call(CancelTaskGraph(filter: GraphFilter(target: "node-3"))) == graph.instanceId)
            #expect(try await finishedStatus(finished) == "cancelled")
            let report = try await collect(tasks, count: 1)[0].message
            #expect(report.label == "wait")
            #expect(report.state == .cancelled)
            let properties = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
            #expect(properties.tasks["after"]?.state == .cancelled)
        }
    }

    @Test("a task that runs past _taskTimeout ends in timeout and fails the graph", arguments: StoreKind.allCases)
    func timeout(store: StoreKind) async throws {
        try await withWorkflowServices(store: store) { bus in
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            let slow = GraphDefinition(
                friendlyName: "too slow", injectableName: "Graph.Test.Timeout",
                tasks: [GraphTask(label: "slow", taskName: "Task.Wait", optionOverrides: ["duration": 30000, "_taskTimeout": 300])])
            _ = try await bus.call(DefineTaskGraph(definition: slow))
            let graph = try await bus.call(RunTaskGraph(name: "Graph.Test.Timeout"))
            #expect(try await finishedStatus(finished) == "failed")
            let properties = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
            #expect(properties.tasks["slow"]?.state == .timeout)
        }
    }

    @Test("pause lets running tasks finish and starts nothing new until resume", arguments: StoreKind.allCases)
    func pauseAndResume(store: StoreKind) async throws {
        try await withWorkflowServices(store: store) { bus in
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            let chain = GraphDefinition(
                friendlyName: "two steps", injectableName: "Graph.Test.Pause",
                tasks: [
                    GraphTask(label: "first", taskName: "Task.Wait", optionOverrides: ["duration": 500]),
                    GraphTask(label: "second", taskName: "Task.noop", waitOn: WaitOn(all: ["first": [.succeeded]])),
                ])
            _ = try await bus.call(DefineTaskGraph(definition: chain))
            let graph = try await bus.call(RunTaskGraph(name: "Graph.Test.Pause"))
            _ = try await bus.call(PauseTaskGraph(filter: GraphFilter(instanceId: graph.instanceId)))
            // A running task finishes (its 500 ms, and its report, can take longer on a loaded machine).
            try await eventually(timeout: .seconds(20)) {
                try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId))).tasks["first"]?.state
                    == .succeeded
            }
            // Time enough for the next task's hand-over, had the pause not held it.
            try await Task.sleep(for: .milliseconds(700))
            let paused = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
            #expect(paused.status == "paused")
            #expect(paused.tasks["second"]?.state == .pending, "nothing new starts")
            _ = try await bus.call(ResumeTaskGraph(filter: GraphFilter(instanceId: graph.instanceId)))
            #expect(try await finishedStatus(finished) == "succeeded")
        }
    }

    @Test("definitions are validated with RackHD's messages, and the libraries list them", arguments: StoreKind.allCases)
    func definitions(store: StoreKind) async throws {
        try await withWorkflowServices(store: store) { bus in
            let bad = GraphDefinition(
                friendlyName: "bad", injectableName: "Graph.Test.Bad",
                tasks: [GraphTask(label: "a", taskName: "Task.noop", waitOn: WaitOn(all: ["ghost": [.finished]]))])
            let error = await #expect(throws: BusError.self) { _ = try await bus.call(DefineTaskGraph(definition: bad)) }
            #expect(error?.status == 400)
            #expect(error?.remote?.message == "Task to wait on does not exist: ghost")
            let task = TaskDefinition(
                friendlyName: "my noop", injectableName: "Task.Test.Noop", implementsTask: "Task.Base.noop", options: ["delay": 0],
                properties: [:])
            #expect(try await bus.call(DefineTask(definition: task)) == "Task.Test.Noop")
            let tasks = try await bus.call(GetTaskLibrary(filter: GraphFilter(injectableName: "Task.Test.Noop")))
            #expect(tasks.map(\.injectableName) == ["Task.Test.Noop"])
            let graphs = try await bus.call(GetTaskGraphLibrary())
            #expect(graphs.contains { $0.injectableName == "Graph.noop-example" })
        }
    }
}

@Suite("Workflow branches and the rackbus graph verbs", .timeLimit(.minutes(2)))
struct WorkflowBranchTests {
    @Test(
        "a failed condition with ignoreFailure takes the failed branch and the graph succeeds",
        arguments: [("true", "when-true"), ("false", "when-false")])
    func branches(condition: String, branch: String) async throws {
        try await withWorkflowServices { bus in
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            let graph = try await bus.call(
                RunTaskGraph(name: "Graph.Evaluate.Example", options: ["evaluate-condition": ["condition": .string(condition)]]))
            #expect(try await finishedStatus(finished) == "succeeded")
            let properties = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
            #expect(properties.tasks["evaluate-condition"]?.state == (condition == "true" ? .succeeded : .failed))
            #expect(properties.tasks[branch]?.state == .succeeded)
            let other = branch == "when-true" ? "when-false" : "when-true"
            #expect(properties.tasks[other]?.state == .pending, "the branch not taken never runs")
        }
    }

    @Test("a failure nobody handles fails the graph and stops its other branch", arguments: StoreKind.allCases)
    func unhandledFailure(store: StoreKind) async throws {
        try await withWorkflowServices(store: store) { bus in
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            let graph = GraphDefinition(
                friendlyName: "fails", injectableName: "Graph.Test.Fails",
                tasks: [
                    GraphTask(label: "check", taskName: "Task.Evaluate.Condition", optionOverrides: ["when": "false"]),
                    GraphTask(label: "slow", taskName: "Task.Wait", optionOverrides: ["duration": 30000]),
                    GraphTask(label: "after", taskName: "Task.noop", waitOn: WaitOn(all: ["check": [.succeeded]])),
                ])
            _ = try await bus.call(DefineTaskGraph(definition: graph))
            let run = try await bus.call(RunTaskGraph(name: "Graph.Test.Fails"))
            #expect(try await finishedStatus(finished) == "failed")
            try await Task.sleep(for: .milliseconds(300))
            let properties = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: run.instanceId)))
            #expect(properties.tasks["check"]?.state == .failed)
            #expect(properties.tasks["slow"]?.state != .succeeded, "the running branch was cancelled")
            #expect(properties.tasks["after"]?.state == .failed, "pending tasks fail with the graph")
        }
    }

    @Test("rackbus graph run --wait follows a graph and exits 0 when it succeeds")
    func cliRunWait() async throws {
        try await withWorkflowServices { bus in
            let output = try await TestBroker.run(
                ServiceProcess.executable.path,
                [
                    "graph", "run", "Graph.noop-example", "--node", "cli-node", "--wait", "--url", TestBroker.url, "--prefix",
                    bus.configuration.exchangePrefix,
                ])
            let lines = output.split(separator: "\n").map(String.init)
            #expect(lines.first?.hasPrefix("started ") == true)
            #expect(lines.filter { $0.hasPrefix("  ") && $0.hasSuffix(": succeeded") }.count == 4, "one line per task")
            #expect(lines.last == "finished: succeeded")
            let json = try await TestBroker.run(
                ServiceProcess.executable.path,
                ["graph", "list", "--json", "--url", TestBroker.url, "--prefix", bus.configuration.exchangePrefix])
            let graphs = try JSONDecoder().decode([GraphDefinition].self, from: Data(json.utf8))
            #expect(graphs.contains { $0.injectableName == "Graph.noop-example" })
        }
    }
}

@Suite("Workflows on quorum work queues", .timeLimit(.minutes(2)))
struct QuorumWorkflowTests {
    @Test("with quorum work queues (a cluster's setting) graphs run as on classic ones, on both stores", arguments: StoreKind.allCases)
    func noopExample(store: StoreKind) async throws {
        try await withWorkflowServices(store: store, queues: .quorum) { bus in
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            _ = try await bus.call(RunTaskGraph(name: "Graph.noop-example", target: "quorum-node"))
            #expect(try await finishedStatus(finished) == "succeeded")
            let prefix = bus.configuration.exchangePrefix
            for queue in [WorkflowQueues.scheduler, WorkflowQueues.taskRunner, TaskGraphRunnerService.finishedQueueName] {
                // Each has its dead-letter queue, which only a quorum work queue gets.
                let deadLetters = BusConfiguration.deadLetterQueue(of: WorkflowQueues.name(queue, prefix: prefix))
                #expect(try await bus.inspectQueue(named: deadLetters).messages == 0)
            }
        }
    }
}

@Suite("A retried runTaskGraph", .timeLimit(.minutes(2)))
struct RetriedRunTests {
    @Test("a retry with the same idempotency key gets the first graph, not a second one nor a 400", arguments: StoreKind.allCases)
    func retryGetsTheFirstGraph(store: StoreKind) async throws {
        try await withWorkflowServices(store: store) { bus in
            // Long enough that the cancel below always finds it running, however loaded the machine.
            let wait = GraphDefinition(
                friendlyName: "wait", injectableName: "Graph.Test.Retried",
                tasks: [GraphTask(label: "wait", taskName: "Task.Wait", optionOverrides: ["duration": 600_000])])
            _ = try await bus.call(DefineTaskGraph(definition: wait))
            let request = RunTaskGraph(name: wait.injectableName, target: "retried-node", idempotencyKey: "request-\(UUID().uuidString)")
            let first = try await bus.call(request)
            // The reply was lost, the caller sends the same request again: twice, even at once.
            async let second = bus.call(request)
            async let third = bus.call(request)
            #expect(try await [second.instanceId, third.instanceId] == [first.instanceId, first.instanceId])
            #expect(try await bus.call(GetActiveTaskGraphs()).map(\.instanceId) == [first.instanceId])
            // Another key for the same node is another request: refused while the first runs.
            let other = await #expect(throws: BusError.self) {
                _ = try await bus.call(RunTaskGraph(name: wait.injectableName, target: "retried-node", idempotencyKey: "another"))
            }
            #expect(other?.status == 400)
            // Once the graph has ended, a retry still answers with it.
            _ = try await bus.call(CancelTaskGraph(filter: GraphFilter(instanceId: first.instanceId)))
            let late = try await bus.call(request)
            #expect(late.instanceId == first.instanceId)
            #expect(late.status == "cancelled")
            // The same key on another request is a mistake, not a retry: a 409, not that graph.
            let reused = await #expect(throws: BusError.self) {
                _ = try await bus.call(
                    RunTaskGraph(name: "Graph.noop-example", target: "retried-node", idempotencyKey: request.idempotencyKey))
            }
            #expect(reused?.status == 409)
            #expect(try await bus.call(GetActiveTaskGraphs()).isEmpty)
        }
    }

    @Test("rackbus graph run --idempotency-key, run twice, starts one graph and prints it twice")
    func cliRetry() async throws {
        try await withWorkflowServices { bus in
            let wait = GraphDefinition(
                friendlyName: "wait", injectableName: "Graph.Test.CLIRetry",
                tasks: [GraphTask(label: "wait", taskName: "Task.Wait", optionOverrides: ["duration": 600_000])])
            _ = try await bus.call(DefineTaskGraph(definition: wait))
            let arguments = [
                "graph", "run", wait.injectableName, "--node", "cli-retry-node", "--idempotency-key", "cli-\(UUID().uuidString)",
                "--url", TestBroker.url, "--prefix", bus.configuration.exchangePrefix,
            ]
            let first = try await TestBroker.run(ServiceProcess.executable.path, arguments)
            let again = try await TestBroker.run(ServiceProcess.executable.path, arguments)
            #expect(first.hasPrefix("started "), "\(first)")
            #expect(again == first)
            let active = try await bus.call(GetActiveTaskGraphs())
            #expect(active.count == 1)
            #expect(first.contains(active.first?.instanceId ?? "none"))
            _ = try await bus.call(CancelTaskGraph(filter: GraphFilter(target: "cli-retry-node")))
        }
    }
}
