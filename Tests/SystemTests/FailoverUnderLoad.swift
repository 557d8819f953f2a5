import BusCore
import BusTestSupport
import Foundation
import Synchronization
import TaskGraphRunner
import Testing

/// A TaskGraphRunner and a Scheduler (one `rackbus up` process) under load — graphs running and
/// RPC calls, continuously — while `disrupt` takes the broker, or the node they use, away.
enum FailoverUnderLoad {
    struct Outcome {
        /// The longest stretch without an answer to an RPC.
        var longestRPCGap: Duration
        /// From `disrupt`'s return (the broker is back, or the node is down) to the next answer.
        var recovery: Duration
        var statuses: [String]
        /// Task id → how many times its job started, and how many `task.finished` reports it got.
        var starts: [String: Int]
        var reports: [String: Int]
    }

    /// Ten publishing tasks in a chain; each publishes `test.start.<its task id>` when it starts.
    static let chain = GraphDefinition(
        friendlyName: "failover chain", injectableName: "Graph.Test.Failover",
        tasks: (1...10).map { index in
            GraphTask(
                label: "t\(index)", taskName: "Task.Event.Publish",
                waitOn: index == 1 ? nil : WaitOn(all: ["t\(index - 1)": [.succeeded]]),
                optionOverrides: ["routingKey": "test.start.{{ task.id }}", "payload": ["graph": "{{ graphId }}"]])
        })

    final class Counts: Sendable {
        let values = Mutex<[String: Int]>([:])
        func add(_ key: String) { values.withLock { $0[key, default: 0] += 1 } }
    }

    /// Runs the load on `configuration` (its URL list and queue type go to the process too) and
    /// calls `disrupt` with the broker port of the process's connection once graphs are running.
    static func run(
        configuration: BusConfiguration, url: String, graphs: Int = 40, environment: [String: String] = [:],
        disrupt: @Sendable (_ processPort: Int?) async throws -> Void
    ) async throws -> Outcome {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-failover-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = directory.appendingPathComponent("up.log")
        let process = ServiceProcess(
            arguments: [
                "--url", url, "--prefix", configuration.exchangePrefix, "--log-level", "warning", "--services", "taskgraph,scheduler",
                "--taskgraph-database", directory.appendingPathComponent("tg.sqlite").path,
            ], logFile: log, environment: environment)
        try process.start()
        defer { Task { await process.stop() } }
        return try await MessageBus.withBus(configuration: configuration, logger: TestBroker.logger) { bus in
            try await bus.waitUntilConnected(timeout: .seconds(30))
            let starts = try await bus.subscribe(to: .events, patterns: ["test.start.*"], as: [String: String].self)
            let reports = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self)
            let (started, reported) = (Counts(), Counts())
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { for await start in starts { started.add(String(start.routingKey.dropFirst("test.start.".count))) } }
                group.addTask { for await report in reports { reported.add(report.message.taskId) } }
                defer { group.cancelAll() }
                _ = try await retryingUntilAnswered(within: .seconds(60)) {
                    try await bus.call(DefineTaskGraph(definition: chain), timeout: .seconds(2))
                }
                // Graphs are started throughout, each with a key, as a careful caller retries.
                let ids = Mutex<[String]>([])
                let rpcGap = Mutex<(last: ContinuousClock.Instant, longest: Duration)>((.now, .zero))
                let load = Task {
                    for index in 0..<graphs {
                        let key = "failover-\(index)-\(UUID().uuidString)"
                        let graph = try await retryingUntilAnswered(within: .seconds(60)) {
                            try await bus.call(RunTaskGraph(name: chain.injectableName, idempotencyKey: key), timeout: .seconds(1))
                        }
                        ids.withLock { $0.append(graph.instanceId) }
                        try await Task.sleep(for: .milliseconds(50))
                    }
                }
                let calls = Task {
                    while !Task.isCancelled {
                        if (try? await bus.call(GetActiveTaskGraphs(), timeout: .milliseconds(300))) != nil {
                            rpcGap.withLock { gap in
                                gap.longest = max(gap.longest, ContinuousClock.now - gap.last)
                                gap.last = .now
                            }
                        } else {
                            try? await Task.sleep(for: .milliseconds(20))
                        }
                    }
                }
                defer { calls.cancel() }
                try await eventually(timeout: .seconds(60)) { started.values.withLock { $0.count } >= 50 }
                rpcGap.withLock { $0 = (.now, .zero) }
                try await disrupt(try await connectionPort(of: "rackbus-up"))
                let back = ContinuousClock.now
                try await eventually(timeout: .seconds(30), pollingEvery: .milliseconds(5)) { rpcGap.withLock { $0.last >= back } }
                let recovery = rpcGap.withLock { $0.last } - back
                try await load.value
                let statuses = try await BusTestSupport.statuses(ofGraphs: ids.withLock { $0 }, on: bus, within: .seconds(120))
                // Late reports (redelivered) still count.
                try await Task.sleep(for: .seconds(1))
                calls.cancel()
                if statuses.count != graphs || statuses.contains(where: { $0 != "succeeded" }) {
                    Issue.record("up.log: \((try? String(contentsOf: log, encoding: .utf8))?.suffix(2000) ?? "")")
                }
                return Outcome(
                    longestRPCGap: rpcGap.withLock { $0.longest }, recovery: recovery, statuses: statuses,
                    starts: started.values.withLock { $0 },
                    reports: reported.values.withLock { $0 })
            }
        }
    }

    /// The broker port (5691, …) the connection named `name` uses, found through each cluster
    /// node's `list_connections`; nil on a single broker.
    static func connectionPort(of name: String) async throws -> Int? {
        guard let urls = try? await BrokerClusterTests.urls() else { return nil }
        for (index, url) in urls.enumerated() {
            let listing =
                (try? await TestBroker.brokerScript("cluster", "ctl", "\(index + 1)", "list_connections", "client_properties")) ?? ""
            if listing.contains(name) { return URLComponents(string: url)?.port }
        }
        return nil
    }

    /// The checks both failover tests make, with the figures for the issue's note.
    /// `longestGap`: the most the calls may go unanswered (a cluster keeps a node up throughout).
    static func check(_ outcome: Outcome, graphs: Int, longestGap: Duration? = nil) {
        print(
            "failover: answered again \(outcome.recovery) after the broker was back, RPC gap \(outcome.longestRPCGap), graphs \(outcome.statuses.count), starts \(outcome.starts.values.reduce(0, +)), "
                + "reports \(outcome.reports.values.reduce(0, +)) for \(outcome.starts.count) tasks, "
                + "tasks reported more than once \(outcome.reports.values.filter { $0 > 1 }.count)")
        #expect(outcome.statuses.count == graphs, "no graph lost")
        #expect(
            outcome.statuses.allSatisfy { $0 == "succeeded" }, "\(Dictionary(grouping: outcome.statuses, by: { $0 }).mapValues(\.count))")
        #expect(outcome.starts.count == graphs * 10, "every task started")
        #expect(outcome.starts.values.allSatisfy { $0 == 1 }, "no task started twice: \(outcome.starts.filter { $0.value > 1 })")
        #expect(outcome.recovery < .seconds(2), "RPCs answered within 2 s of the broker's return: \(outcome.recovery)")
        if let longestGap {
            #expect(outcome.longestRPCGap < longestGap, "RPCs went unanswered for \(outcome.longestRPCGap)")
        }
    }
}
