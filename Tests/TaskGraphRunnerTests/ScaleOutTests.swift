import BusCore
import BusTestSupport
import Foundation
import Synchronization
import Testing

@testable import TaskGraphRunner

/// Several TaskGraphRunner processes on one PostgreSQL database, with one Scheduler, as an
/// operator would run them: `rackbus up --services taskgraph --taskgraph-database postgres://…`.
@Suite("Several TaskGraphRunner instances on one PostgreSQL store", .serialized, .timeLimit(.minutes(4)))
struct ScaleOutTests {
    /// Three publishing tasks in a chain; each publishes `test.start.<its task id>`, with its
    /// graph's id, when its job starts.
    static let chain = GraphDefinition(
        friendlyName: "scale-out chain", injectableName: "Graph.Test.ScaleOut",
        tasks: (1...3).map { index in
            GraphTask(
                label: "t\(index)", taskName: "Task.Event.Publish",
                waitOn: index == 1 ? nil : WaitOn(all: ["t\(index - 1)": [.succeeded]]),
                optionOverrides: ["routingKey": "test.start.{{ task.id }}", "payload": ["graph": "{{ graphId }}"]])
        })

    /// Runs `instances` TaskGraphRunners and a Scheduler, each its own process, on a new database.
    func withInstances(
        _ instances: Int, _ body: @Sendable (MessageBus, [ServiceProcess]) async throws -> Void
    ) async throws {
        try await TestPostgres.withDatabase { database in
            let configuration = try TestBroker.configuration()
            let common = ["--url", TestBroker.url, "--prefix", configuration.exchangePrefix, "--log-level", "warning"]
            // The setting as deploy/'s drop-in gives it, in the environment.
            let runners = (0..<instances).map { _ in
                ServiceProcess(arguments: common + ["--services", "taskgraph"], environment: ["RACKBUS_TASKGRAPH_DATABASE": database])
            }
            let scheduler = ServiceProcess(arguments: common + ["--services", "scheduler", "--scheduler-concurrency", "256"])
            for process in runners + [scheduler] { try process.start() }
            do {
                try await TestBroker.withBus(configuration) { bus in try await body(bus, runners) }
            } catch {
                for process in runners + [scheduler] { await process.stop() }
                throw error
            }
            for process in runners + [scheduler] { await process.stop() }
        }
    }

    /// Task starts as they arrive: task id and graph id, in order.
    final class Starts: Sendable {
        private let storage = Mutex<[(task: String, graph: String, at: ContinuousClock.Instant)]>([])
        func append(task: String, graph: String) { storage.withLock { $0.append((task, graph, .now)) } }
        var all: [(task: String, graph: String, at: ContinuousClock.Instant)] { storage.withLock { $0 } }
    }

    @Test("100 graphs over 2 and 3 instances all succeed, and each task starts exactly once", arguments: [2, 3])
    func hundredGraphs(instances: Int) async throws {
        try await withInstances(instances) { bus, _ in
            let starts = try await bus.subscribe(to: .events, patterns: ["test.start.*"], as: [String: String].self)
            let recorded = Starts()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await start in starts {
                        recorded.append(task: String(start.routingKey.dropFirst("test.start.".count)), graph: start.message["graph"] ?? "")
                    }
                }
                defer { group.cancelAll() }
                _ = try await retryingUntilAnswered(within: .seconds(30)) {
                    try await bus.call(DefineTaskGraph(definition: Self.chain), timeout: .seconds(2))
                }
                // Requests are shared among the instances: each creates some of the graphs.
                var ids: [String] = []
                for _ in 0..<100 { ids.append(try await bus.call(RunTaskGraph(name: Self.chain.injectableName)).instanceId) }
                let statuses = try await BusTestSupport.statuses(ofGraphs: ids, on: bus, within: .seconds(120))
                #expect(statuses.allSatisfy { $0 == "succeeded" }, "\(Dictionary(grouping: statuses, by: { $0 }).mapValues(\.count))")
                try await Task.sleep(for: .milliseconds(500))
                let tasks = recorded.all.map(\.task)
                #expect(tasks.count == 300, "every task started once: \(tasks.count) starts")
                #expect(Set(tasks).count == 300)
                #expect(Set(recorded.all.map(\.graph)) == Set(ids))
            }
        }
    }

    @Test("deploy/'s drop-in reads a file after rackbus.env that names the setting the service reads, with a URL it accepts")
    func deployDropIn() throws {
        let deploy = TestBroker.repositoryRoot.appendingPathComponent("deploy")
        let dropIn = try String(
            contentsOf: deploy.appendingPathComponent("systemd/rackbus-taskgraph.service.d/postgres.conf"), encoding: .utf8)
        let lines = dropIn.split(separator: "\n")
        // Environment= would lose to rackbus.env's EnvironmentFile: only a file can override it.
        #expect(!lines.contains { $0.hasPrefix("Environment=") })
        #expect(lines.contains("EnvironmentFile=/etc/rackbus/credentials/taskgraph-database.env"))
        let unit = try String(contentsOf: deploy.appendingPathComponent("systemd/rackbus-taskgraph.service"), encoding: .utf8)
        #expect(unit.contains("EnvironmentFile=/etc/rackbus/rackbus.env"), "the unit's own file comes first; a drop-in's is read after it")
        let text = try String(contentsOf: deploy.appendingPathComponent("postgres/taskgraph-database.env"), encoding: .utf8)
        let line = try #require(text.split(separator: "\n").first { !$0.hasPrefix("#") })
        let setting = line.split(separator: "=", maxSplits: 1)
        #expect(setting.first == "RACKBUS_TASKGRAPH_DATABASE")
        guard case .postgres(let location) = try GraphStoreLocation(String(setting.last ?? "")) else {
            Issue.record("not a PostgreSQL URL: \(line)")
            return
        }
        #expect(location.tls == .require)
        #expect(location.database == "rackbus")
    }

    @Test("every instance sees every graph, and one node gets one graph whichever instance is asked")
    func oneSystem() async throws {
        let waiting = GraphDefinition(
            friendlyName: "waits", injectableName: "Graph.Test.ScaleOut.Wait",
            tasks: [GraphTask(label: "wait", taskName: "Task.Wait", optionOverrides: ["duration": 60000])])
        try await withInstances(3) { bus, _ in
            _ = try await retryingUntilAnswered(within: .seconds(30)) {
                try await bus.call(DefineTaskGraph(definition: waiting), timeout: .seconds(2))
            }
            var ids: Set<String> = []
            for index in 0..<12 {
                ids.insert(try await bus.call(RunTaskGraph(name: waiting.injectableName, target: "scale-node-\(index)")).instanceId)
            }
            // Each call may reach any instance: every answer lists all twelve.
            for _ in 0..<9 {
                let listed = try await bus.call(GetActiveTaskGraphs())
                #expect(Set(listed.map(\.instanceId)) == ids)
            }
            // Twelve runs for one node at once, spread over the instances: exactly one is accepted.
            let accepted = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<12 {
                    group.addTask {
                        do {
                            _ = try await bus.call(RunTaskGraph(name: waiting.injectableName, target: "contended-node"))
                            return true
                        } catch let error as BusError where error.status == 400 {
                            return false
                        }
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(accepted == 1)
            // Any instance cancels any graph.
            for id in ids { _ = try await bus.call(CancelTaskGraph(filter: GraphFilter(instanceId: id))) }
            #expect(try await bus.call(GetActiveTaskGraphs()).count == 1)
        }
    }

    @Test("kill -9 one of three instances amid 100 graphs: every graph succeeds, and no task starts twice")
    func killOneInstance() async throws {
        try await withInstances(3) { bus, runners in
            let starts = try await bus.subscribe(to: .events, patterns: ["test.start.*"], as: [String: String].self)
            let reports = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self)
            let recorded = Starts()
            let reported = Recorded()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await start in starts {
                        recorded.append(task: String(start.routingKey.dropFirst("test.start.".count)), graph: start.message["graph"] ?? "")
                    }
                }
                group.addTask { for await report in reports { reported.append(report.message.taskId) } }
                defer { group.cancelAll() }
                _ = try await retryingUntilAnswered(within: .seconds(30)) {
                    try await bus.call(DefineTaskGraph(definition: Self.chain), timeout: .seconds(2))
                }
                var ids: [String] = []
                for _ in 0..<100 { ids.append(try await bus.call(RunTaskGraph(name: Self.chain.injectableName)).instanceId) }
                try await eventually(timeout: .seconds(60)) { recorded.all.count >= 100 }
                let killedAt = ContinuousClock.now
                await runners[0].kill()
                try await Task.sleep(for: .milliseconds(500))
                let finishedBefore = Set(reported.values)
                let statuses = try await BusTestSupport.statuses(ofGraphs: ids, on: bus, within: .seconds(120))
                #expect(statuses.allSatisfy { $0 == "succeeded" }, "\(Dictionary(grouping: statuses, by: { $0 }).mapValues(\.count))")
                try await Task.sleep(for: .milliseconds(500))
                let all = recorded.all
                let startsByTask = Dictionary(grouping: all, by: \.task)
                #expect(startsByTask.count == 300, "every task started")
                // Only a task that was running in the killed instance may start again: once, and only
                // after the killed runner's claim on it ran out (so never while another runs it).
                for (task, starts) in startsByTask where starts.count > 1 {
                    #expect(starts.count == 2, "\(task) started \(starts.count) times")
                    // (Arrival times: what the killed instance published may arrive a moment after it died.)
                    #expect(starts[0].at < killedAt + .milliseconds(500), "\(task) started twice after the kill")
                    #expect(!finishedBefore.contains(task), "\(task) had finished and started again")
                    #expect(starts[1].at - killedAt > .seconds(3), "\(task) started again while the killed runner's claim held")
                }
                // The survivors carry every unfinished graph on within 10 s of the kill.
                let startsBeforeKill = Dictionary(grouping: all.filter { $0.at < killedAt }, by: \.graph).mapValues(\.count)
                for graph in ids where startsBeforeKill[graph, default: 0] < 3 {
                    guard let next = all.first(where: { $0.graph == graph && $0.at >= killedAt }) else { continue }
                    #expect(next.at - killedAt < .seconds(10), "graph \(graph) waited \(next.at - killedAt)")
                }
            }
        }
    }
}
