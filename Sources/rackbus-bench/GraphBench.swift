import ArgumentParser
import BusCore
import Foundation
import Scheduler
import Synchronization
import TaskGraphRunner

struct GraphBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graphs",
        abstract: "Graphs of 10 chained Task.noop through TaskGraphRunner, Scheduler and task runner, state in SQLite or PostgreSQL.")

    @Option(help: "Graphs to run") var graphs = 200
    @Option(help: "Graphs in flight") var inFlight = 32
    @Flag(help: "Give each graph a node target of its own, so that its tasks answer node-scoped RPCs")
    var targetNodes = false
    @Option(help: "Store graphs here: a postgres:// URL (a database of its own: the bench adds tables) instead of a new SQLite file")
    var database: String?

    func run() async throws {
        let configuration = try benchConfiguration("rackbus-bench-graphs")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-bench-\(UUID().uuidString).sqlite").path
        defer {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: file + suffix) }
        }
        let database = self.database ?? file
        let (total, concurrency, targetNodes) = (graphs, inFlight, targetNodes)
        try await MessageBus.withBus(configuration: configuration, logger: benchLogger) { bus in
            try await bus.waitUntilConnected()
            let runner = TaskGraphRunnerService(
                bus: bus, configuration: .init(database: database, taskConcurrency: 256), logger: benchLogger)
            let scheduler = SchedulerService(bus: bus, concurrency: 256, logger: benchLogger)
            try await withThrowingTaskGroup(of: Void.self) { services in
                services.addTask { try await runner.run() }
                services.addTask { try await scheduler.run() }
                defer { services.cancelAll() }
                await runner.waitUntilReady()
                let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
                let waiters = GraphWaiters()
                let listener = Task {
                    for await event in finished { waiters.finish(event.message.graphId, status: event.message.status) }
                }
                defer { listener.cancel() }
                let broker = CPUTime.brokerPid
                let (processCPU, brokerCPU) = (CPUTime.ownSeconds, broker.flatMap(CPUTime.seconds(ofProcess:)))
                let started = ContinuousClock.now
                let latencies = try await measureCalls(total: total, concurrency: concurrency) { index in
                    let target = targetNodes ? "bench-node-\(index)" : nil
                    let graph = try await bus.call(RunTaskGraph(name: "Graph.Noop.Chain.10", target: target))
                    let status = await waiters.wait(for: graph.instanceId)
                    precondition(status == "succeeded", "graph \(graph.instanceId) ended \(status)")
                }
                let elapsed = ContinuousClock.now - started
                let tasks = Double(total * 10)
                var extra = [
                    "graphs": "\(total)", "graphs_in_flight": "\(concurrency)", "tasks_per_graph": "10",
                    "target_nodes": "\(targetNodes)", "store": database.hasPrefix("postgres") ? "\"postgresql\"" : "\"sqlite\"",
                    "process_cpu_us_per_task": String(format: "%.0f", (CPUTime.ownSeconds - processCPU) * 1e6 / tasks),
                ]
                // The broker's CPU per task, when it is the local broker of scripts/broker.
                if let broker, let brokerCPU, let now = CPUTime.seconds(ofProcess: broker) {
                    extra["broker_cpu_us_per_task"] = String(format: "%.0f", (now - brokerCPU) * 1e6 / tasks)
                }
                Figures(caseName: "graphs", count: total * 10, elapsed: elapsed, latencies: latencies, extra: extra).printLine()
            }
        }
    }
}

/// Matches `graph.finished` events to the calls waiting for them (an event may come first).
final class GraphWaiters: Sendable {
    private let state = Mutex<(done: [String: String], waiting: [String: CheckedContinuation<String, Never>])>(([:], [:]))

    func finish(_ id: String, status: String) {
        let waiter = state.withLock { state -> CheckedContinuation<String, Never>? in
            if let waiter = state.waiting.removeValue(forKey: id) { return waiter }
            state.done[id] = status
            return nil
        }
        waiter?.resume(returning: status)
    }

    func wait(for id: String) async -> String {
        await withCheckedContinuation { continuation in
            let status = state.withLock { state -> String? in
                if let status = state.done.removeValue(forKey: id) { return status }
                state.waiting[id] = continuation
                return nil
            }
            if let status { continuation.resume(returning: status) }
        }
    }
}
