import BusCore
import BusTestSupport
import Foundation
import Scheduler
import Testing

@testable import TaskGraphRunner

/// A TaskGraphRunner with a SQLite store holds its graphs alone: a second TaskGraphRunner on the
/// same bus would take reports for graphs it cannot see, and they would stall without a word.
@Suite("A TaskGraphRunner with a SQLite store is the only one on its bus", .timeLimit(.minutes(2)))
struct SoleRunnerTests {
    /// The first instance's store, then the second's; each in a process of its own (a bus of its own).
    @Test(
        "the second instance refuses to start with an error saying why, and the first goes on running graphs",
        arguments: [(StoreKind.sqlite, StoreKind.sqlite), (.postgres, .sqlite), (.sqlite, .postgres)])
    func secondInstanceRefused(first: StoreKind, second: StoreKind) async throws {
        try await TestPostgres.withDatabase { postgresURL in
            let (firstDatabase, secondDatabase) = (
                first == .sqlite ? ":memory:" : postgresURL, second == .sqlite ? ":memory:" : postgresURL
            )
            let configuration = try TestBroker.configuration()
            try await TestBroker.withBus(configuration) { bus in
                let running = TaskGraphRunnerService(
                    bus: bus, configuration: .init(database: firstDatabase), logger: TestBroker.logger)
                let scheduler = SchedulerService(bus: bus, logger: TestBroker.logger)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await running.run() }
                    group.addTask { try await scheduler.run() }
                    defer { group.cancelAll() }
                    await running.waitUntilReady()
                    let refusal = try await TestBroker.withBus(configuration) { otherProcess in
                        let refused = TaskGraphRunnerService(
                            bus: otherProcess, configuration: .init(database: secondDatabase), logger: TestBroker.logger)
                        return await #expect(throws: AnotherTaskGraphRunnerError.self) { try await refused.run() }
                    }
                    #expect(refusal?.ownStore == (second == .sqlite))
                    #expect(refusal?.description.contains("SQLite") == true, "\(String(describing: refusal))")
                    // The one that was there first still runs graphs, reports and all.
                    let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
                    _ = try await bus.call(RunTaskGraph(name: "Graph.noop-example"))
                    #expect(try await finishedStatus(finished) == "succeeded")
                }
            }
        }
    }

    @Test("reports that end while the service is not stopping stop it with an error, so that graphs do not stall unseen")
    func reportsEndedStopsTheService() async throws {
        try await TestBroker.withBus { bus in
            let store = try await SQLiteGraphStore.open(path: ":memory:")
            let engine = try await GraphEngine(bus: bus, store: store, logger: TestBroker.logger)
            let reports = try await bus.workQueue(
                named: "\(bus.configuration.exchangePrefix).test-reports", bindings: [(.events, "task.finished.*")], as: TaskFinished.self)
            // As when the broker refuses the consumer after a reconnect: the sequence ends.
            reports.cancel()
            await #expect(throws: ReportsEndedError.self) { try await TaskGraphRunnerService.handle(reports, with: engine) }
        }
    }
}
