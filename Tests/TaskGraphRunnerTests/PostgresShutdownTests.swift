import BusCore
import BusTestSupport
import Foundation
import Scheduler
import Testing

@testable import TaskGraphRunner

@Suite("A TaskGraphRunner on PostgreSQL ends when cancelled with work in flight", .timeLimit(.minutes(2)))
struct PostgresShutdownTests {
    static let chain = GraphDefinition(
        friendlyName: "busy chain", injectableName: "Graph.Test.Busy",
        tasks: (1...20).map { index in
            GraphTask(label: "t\(index)", taskName: "Task.noop", waitOn: index == 1 ? nil : WaitOn(all: ["t\(index - 1)": [.succeeded]]))
        })

    @Test("cancelled while tasks finish and graphs change, run() returns: its database pool closes after its work")
    func cancelledWhileBusy() async throws {
        for round in 1...3 {
            try await TestPostgres.withDatabase { database in
                try await TestBroker.withBus { bus in
                    let service = TaskGraphRunnerService(bus: bus, configuration: .init(database: database), logger: TestBroker.logger)
                    let scheduler = SchedulerService(bus: bus, concurrency: 64, logger: TestBroker.logger)
                    let ended = Locked(false)
                    // Not children of this test: one that never ends must fail the test, not hang it.
                    let running = Task {
                        try? await service.run()
                        ended.withLock { $0 = true }
                    }
                    let scheduling = Task { try? await scheduler.run() }
                    defer { scheduling.cancel() }
                    await service.waitUntilReady()
                    let reports = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self)
                    _ = try await bus.call(DefineTaskGraph(definition: Self.chain))
                    for _ in 0..<10 { _ = try await bus.call(RunTaskGraph(name: Self.chain.injectableName)) }
                    _ = try await collect(reports, count: 30, timeout: .seconds(30))
                    running.cancel()
                    do {
                        try await eventually(timeout: .seconds(20)) { ended.withLock { $0 } }
                    } catch {
                        Issue.record("round \(round): the cancelled TaskGraphRunner did not end within 20 s")
                    }
                }
            }
        }
    }
}
