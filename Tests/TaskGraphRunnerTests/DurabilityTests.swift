import BusCore
import BusTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

@testable import TaskGraphRunner

@Suite("Durability: kill -9 in the middle of a graph", .serialized, .timeLimit(.minutes(3)))
struct DurabilityTests {
    /// publish p1 → wait → publish p2 → wait → publish p3: each publish shows whether a task ran twice.
    static let graph = GraphDefinition(
        friendlyName: "durable chain", injectableName: "Graph.Test.Durable",
        tasks: [
            GraphTask(
                label: "p1", taskName: "Task.Event.Publish", optionOverrides: ["routingKey": "test.ran.p1", "payload": ["label": "p1"]]),
            GraphTask(label: "w1", taskName: "Task.Wait", waitOn: WaitOn(all: ["p1": [.succeeded]]), optionOverrides: ["duration": 1500]),
            GraphTask(
                label: "p2", taskName: "Task.Event.Publish", waitOn: WaitOn(all: ["w1": [.succeeded]]),
                optionOverrides: ["routingKey": "test.ran.p2", "payload": ["label": "p2"]]),
            GraphTask(label: "w2", taskName: "Task.Wait", waitOn: WaitOn(all: ["p2": [.succeeded]]), optionOverrides: ["duration": 1500]),
            GraphTask(
                label: "p3", taskName: "Task.Event.Publish", waitOn: WaitOn(all: ["w2": [.succeeded]]),
                optionOverrides: ["routingKey": "test.ran.p3", "payload": ["label": "p3"]]),
        ])

    /// Runs a TaskGraphRunner and a Scheduler as their own processes (so they can be killed) and
    /// `body` with a bus on the same prefix.
    func withServices(_ body: @Sendable (MessageBus, [String: ServiceProcess]) async throws -> Void) async throws {
        let configuration = try TestBroker.configuration()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-durable-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let common = ["--url", TestBroker.url, "--prefix", configuration.exchangePrefix, "--log-level", "info"]
        let logs = ["taskgraph", "scheduler"].map { directory.appendingPathComponent("\($0).log") }
        let services = [
            "taskgraph": ServiceProcess(
                arguments: common + [
                    "--services", "taskgraph", "--taskgraph-database", directory.appendingPathComponent("tg.sqlite").path,
                ],
                logFile: logs[0]),
            "scheduler": ServiceProcess(arguments: common + ["--services", "scheduler"], logFile: logs[1]),
        ]
        for service in services.values { try service.start() }
        do {
            try await TestBroker.withBus(configuration) { bus in try await body(bus, services) }
        } catch {
            for service in services.values { await service.stop() }
            // What the services said (both lives of a killed one) tells where the graph stopped.
            for log in logs {
                let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
                print("--- \(log.lastPathComponent), last lines:\n\(text.split(separator: "\n").suffix(60).joined(separator: "\n"))")
            }
            throw error
        }
        for service in services.values { await service.stop() }
    }

    func run(killing victim: String) async throws {
        try await withServices { bus, services in
            let ran = try await bus.subscribe(to: .events, patterns: ["test.ran.*"], as: JSONValue.self)
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            let reports = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self)
            // The TaskGraphRunner answers once it is up.
            _ = try await retryingUntilAnswered(within: .seconds(30)) {
                try await bus.call(DefineTaskGraph(definition: Self.graph), timeout: .seconds(1))
            }
            _ = try await bus.call(RunTaskGraph(name: "Graph.Test.Durable", target: "durable-node"))
            // Kill in the middle: once p2 has finished (its end reported), while w2 waits.
            let first = try await collect(ran, count: 2, timeout: .seconds(30))
            #expect(first.map(\.routingKey) == ["test.ran.p1", "test.ran.p2"])
            var iterator = reports.makeAsyncIterator()
            while let report = await iterator.next(), report.message.label != "p2" {}
            await services[victim]!.kill()
            try await Task.sleep(for: .milliseconds(500))
            try services[victim]!.start()
            #expect(try await finishedStatus(finished, timeout: .seconds(60)) == "succeeded")
            let rest = try await collect(ran, count: 1, timeout: .seconds(10))
            #expect(rest.map(\.routingKey) == ["test.ran.p3"])
            // Nothing that had finished ran again.
            #expect(await drain(ran, for: .seconds(1)).isEmpty)
        }
    }

    @Test("kill -9 the TaskGraphRunner mid-graph: the graph still succeeds and no finished task runs again")
    func killTaskGraphRunner() async throws {
        try await run(killing: "taskgraph")
    }

    @Test("kill -9 the Scheduler mid-graph: the graph still succeeds and no finished task runs again")
    func killScheduler() async throws {
        try await run(killing: "scheduler")
    }

    /// Ten publishing tasks in a chain; each publishes `test.start.<its task id>` when its job starts.
    static let countingChain = GraphDefinition(
        friendlyName: "counting chain", injectableName: "Graph.Test.Durable.Counting",
        tasks: (1...10).map { index in
            GraphTask(
                label: "t\(index)", taskName: "Task.Event.Publish",
                waitOn: index == 1 ? nil : WaitOn(all: ["t\(index - 1)": [.succeeded]]),
                optionOverrides: ["routingKey": "test.start.{{ task.id }}", "payload": ["label": .string("t\(index)")]])
        })

    @Test("kill -9 the TaskGraphRunner amid 30 chains of 10 tasks: every graph succeeds and no task starts twice")
    func noTaskStartsTwice() async throws {
        try await withServices { bus, services in
            let starts = try await bus.subscribe(to: .events, patterns: ["test.start.*"], as: JSONValue.self)
            let reports = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self)
            // One consumer per subscription for the whole test, in arrival order.
            let started = Recorded()
            let reported = Recorded()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await start in starts { started.append(String(start.routingKey.dropFirst("test.start.".count))) }
                }
                group.addTask { for await report in reports { reported.append(report.message.taskId) } }
                defer { group.cancelAll() }
                _ = try await retryingUntilAnswered(within: .seconds(30)) {
                    try await bus.call(DefineTaskGraph(definition: Self.countingChain), timeout: .seconds(1))
                }
                var graphIDs: [String] = []
                for _ in 0..<30 { graphIDs.append(try await bus.call(RunTaskGraph(name: Self.countingChain.injectableName)).instanceId) }
                // Kill once about a third of the tasks have started.
                try await eventually(timeout: .seconds(60)) { started.values.count >= 100 }
                await services["taskgraph"]!.kill()
                // What the dead process published before it died is still on its way.
                try await Task.sleep(for: .milliseconds(500))
                let (startedBefore, finishedBefore) = (started.values, Set(reported.values))
                try services["taskgraph"]!.start()
                // Every graph ends, as its stored state shows (the restarted process answers once it is up).
                let statuses: [String]
                do {
                    statuses = try await BusTestSupport.statuses(ofGraphs: graphIDs, on: bus, within: .seconds(90))
                } catch {
                    for graph in (try? await bus.call(GetActiveTaskGraphs())) ?? [] {
                        let states = graph.tasks.values.map { "\($0.label)=\($0.state.rawValue)" }.sorted()
                        Issue.record("graph \(graph.instanceId) is \(graph.status): \(states)")
                    }
                    throw error
                }
                #expect(statuses.allSatisfy { $0 == "succeeded" }, "\(statuses)")
                try await Task.sleep(for: .milliseconds(500))
                let all = started.values
                let after = Array(all.dropFirst(startedBefore.count))
                #expect(Set(all).count == 300, "every task started")
                // Only a task that was running when the process died may start again, and only once.
                #expect(Set(startedBefore).count == startedBefore.count, "a task started twice before the kill")
                #expect(Set(after).count == after.count, "a task started twice after the restart")
                let finishedAndAgain = Set(after).intersection(finishedBefore)
                #expect(finishedAndAgain.isEmpty, "a finished task started again: \(finishedAndAgain)")
            }
        }
    }

    @Test("kill -9 the Scheduler while a task runs: the task's _taskTimeout still ends it")
    func timeoutSurvivesSchedulerRestart() async throws {
        let graph = GraphDefinition(
            friendlyName: "slow task", injectableName: "Graph.Test.Durable.Timeout",
            tasks: [GraphTask(label: "slow", taskName: "Task.Wait", optionOverrides: ["duration": 60000, "_taskTimeout": 4000])])
        try await withServices { bus, services in
            let handedOver = try await bus.subscribe(to: .task, patterns: ["run.*"], as: TaskSpec.self)
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            let reports = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self)
            _ = try await retryingUntilAnswered(within: .seconds(30)) {
                try await bus.call(DefineTaskGraph(definition: graph), timeout: .seconds(1))
            }
            let started = ContinuousClock.now
            _ = try await bus.call(RunTaskGraph(name: graph.injectableName, target: "timeout-node"))
            // The Scheduler has handed the task on and is timing it: it dies and comes back knowing nothing.
            _ = try await collect(handedOver, count: 1, timeout: .seconds(30))
            // Past the Scheduler's ack of the `schedule` request (it acks once the `run` is
            // confirmed, within milliseconds), so the broker does not hand the request back.
            try await Task.sleep(for: .seconds(1))
            await services["scheduler"]!.kill()
            try services["scheduler"]!.start()
            #expect(try await finishedStatus(finished, timeout: .seconds(30)) == "failed")
            #expect(ContinuousClock.now - started < .seconds(30), "ended by its 4 s timeout, not by its 60 s wait")
            let report = try await collect(reports, count: 1, timeout: .seconds(5))
            #expect(report.first?.message.state == .timeout)
        }
    }
}

/// Values appended by one task and read by another, in order.
final class Recorded: Sendable {
    private let storage = Mutex<[String]>([])
    func append(_ value: String) { storage.withLock { $0.append(value) } }
    var values: [String] { storage.withLock { $0 } }
}
