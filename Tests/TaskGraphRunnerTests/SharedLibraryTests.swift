import BusCore
import BusTestSupport
import Foundation
import Scheduler
import Testing

@testable import TaskGraphRunner

/// Two TaskGraphRunner instances on one PostgreSQL store, each reached through a bus prefix of
/// its own so that a test chooses which instance answers.
@Suite("Several instances share one library", .timeLimit(.minutes(2)))
struct SharedLibraryTests {
    static func chain(_ labels: [String]) -> GraphDefinition {
        GraphDefinition(
            friendlyName: "shared \(labels.count)", injectableName: "Graph.Test.Shared",
            tasks: labels.map { GraphTask(label: $0, taskName: "Task.noop") })
    }

    @Test("a graph redefined through one instance runs with its new definition on the other")
    func redefinitionReachesOtherInstances() async throws {
        try await TestPostgres.withDatabase { database in
            try await TestBroker.withBus { first in
                try await TestBroker.withBus { second in
                    let services = [first, second].map {
                        TaskGraphRunnerService(bus: $0, configuration: .init(database: database), logger: TestBroker.logger)
                    }
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for service in services { group.addTask { try await service.run() } }
                        defer { group.cancelAll() }
                        for service in services { await service.waitUntilReady() }

                        _ = try await first.call(DefineTaskGraph(definition: Self.chain(["a"])))
                        #expect(try await second.call(RunTaskGraph(name: "Graph.Test.Shared")).tasks.count == 1)
                        // The second instance has that definition loaded now; the first replaces it.
                        _ = try await first.call(DefineTaskGraph(definition: Self.chain(["a", "b", "c"])))
                        #expect(try await second.call(RunTaskGraph(name: "Graph.Test.Shared")).tasks.count == 3)
                        let listed = try await second.call(GetTaskGraphLibrary(filter: GraphFilter(injectableName: "Graph.Test.Shared")))
                        #expect(listed.map(\.friendlyName) == ["shared 3"])
                    }
                }
            }
        }
    }
}

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
