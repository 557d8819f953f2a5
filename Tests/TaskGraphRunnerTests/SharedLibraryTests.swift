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

    @Test("a graph run again after it, or a task it uses, was redefined runs with the new definition (no stale plan)")
    func redefinitionOnOneInstance() async throws {
        try await TestBroker.withBus { bus in
            let service = TaskGraphRunnerService(
                bus: bus, configuration: .init(database: ":memory:", runsTasks: false), logger: TestBroker.logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                defer { group.cancelAll() }
                await service.waitUntilReady()
                func task(_ message: String) -> TaskDefinition {
                    TaskDefinition(
                        friendlyName: "said", injectableName: "Task.Test.Said", implementsTask: "Task.Base.noop",
                        options: ["message": .string(message)], properties: [:])
                }
                /// The `message` option of each run's task `said`.
                func runMessage() async throws -> JSONValue? {
                    let graph = try await bus.call(RunTaskGraph(name: "Graph.Test.Said"))
                    let properties = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
                    _ = try await bus.call(CancelTaskGraph(filter: GraphFilter(instanceId: graph.instanceId)))
                    return properties.tasks["said"]?.options["message"]
                }
                _ = try await bus.call(DefineTask(definition: task("first")))
                let graph = GraphDefinition(
                    friendlyName: "said", injectableName: "Graph.Test.Said", tasks: [GraphTask(label: "said", taskName: "Task.Test.Said")])
                _ = try await bus.call(DefineTaskGraph(definition: graph))
                #expect(try await runMessage() == "first")
                #expect(try await runMessage() == "first")
                // The summary's time is ISO 8601, to the second, in UTC.
                let summary = try await bus.call(RunTaskGraph(name: "Graph.Test.Said"))
                let created = try Date.ISO8601FormatStyle().parse(summary.createdAt)
                #expect(abs(created.timeIntervalSinceNow) < 60 && summary.createdAt.hasSuffix("Z"))
                _ = try await bus.call(CancelTaskGraph(filter: GraphFilter(instanceId: summary.instanceId)))
                _ = try await bus.call(DefineTask(definition: task("second")))
                #expect(try await runMessage() == "second", "the task was redefined")
                var longer = graph
                longer.tasks.append(GraphTask(label: "after", taskName: "Task.noop"))
                _ = try await bus.call(DefineTaskGraph(definition: longer))
                #expect(try await bus.call(RunTaskGraph(name: "Graph.Test.Said")).tasks.count == 2, "the graph was redefined")
            }
        }
    }
}
