import BusCore
import BusTestSupport
import Foundation
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
