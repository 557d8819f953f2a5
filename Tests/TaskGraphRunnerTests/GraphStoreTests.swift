import BusCore
import BusTestSupport
import Foundation
import GRDB
import Testing

@testable import TaskGraphRunner

/// Runs `body` with a store of `kind` on a database of its own.
func withGraphStore<Result: Sendable>(_ kind: StoreKind, _ body: @Sendable (any GraphStore) async throws -> Result) async throws -> Result {
    switch kind {
    case .sqlite:
        return try await body(try await SQLiteGraphStore.open(path: ":memory:"))
    case .postgres:
        return try await TestPostgres.withDatabase { url in
            guard case .postgres(let location) = try GraphStoreLocation(url) else { throw TestFailure("not a postgres URL: \(url)") }
            let store = PostgresGraphStore(location: location, logger: TestBroker.logger)
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await store.run() }
                defer { group.cancelAll() }
                // Waits for run() to drive the pool.
                try await store.migrate(timeout: .seconds(5))
                return try await body(store)
            }
        }
    }
}

@Suite("Both graph stores keep the same promises", .timeLimit(.minutes(1)))
struct GraphStoreTests {
    static let planner = ActionPlanner(exchanges: .init(scheduler: "x.scheduler", task: "x.task", events: "x.events"))

    /// A new instance of Graph.noop-example, begun, with the messages that begin it.
    func begun(target: String?) throws -> GraphChange {
        let definition = try #require(BuiltInLibrary.graphs.first { $0.injectableName == "Graph.noop-example" })
        let plan = try GraphCompiler.compile(definition, library: TaskLibrary(BuiltInLibrary.tasks), options: [:])
        let id = UUID().uuidString.lowercased()
        var instance = GraphInstance(
            id: id, plan: plan, run: GraphRun(plan: plan), target: target, context: ["graphId": .string(id)],
            taskIDs: Dictionary(uniqueKeysWithValues: plan.tasks.map { ($0.label, UUID().uuidString.lowercased()) }), errors: [:],
            createdAt: Date())
        let actions = instance.run.begin()
        let messages = Self.planner.carryOut(actions, on: &instance)
        return GraphChange(instance: instance, outbox: messages)
    }

    @Test("a graph is created, changed and read back; one active graph per target", arguments: StoreKind.allCases)
    func createChangeRead(kind: StoreKind) async throws {
        try await withGraphStore(kind) { store in
            let first = try begun(target: "node-a")
            try await store.create(first)
            await #expect(throws: GraphStoreError.targetBusy("node-a")) { try await store.create(try begun(target: "node-a")) }
            try await store.create(try begun(target: nil))
            try await store.create(try begun(target: nil))
            #expect(try await store.activeGraphs(target: nil, name: nil).count == 3)
            #expect(try await store.activeGraphs(target: "node-a", name: nil).map(\.id) == [first.instance.id])
            #expect(try await store.activeGraphs(target: nil, name: "Graph.other").isEmpty)
            // Cancelling ends the graph: it leaves the active list, frees its target, and can be read still.
            let changed = try await store.change(graph: first.instance.id, isolation: nil) { current in
                var instance = current
                _ = instance.run.cancel()
                return GraphChange(instance: instance, outbox: [])
            }
            #expect(changed?.instance.run.status == .cancelled)
            #expect(try await store.activeGraphs(target: "node-a", name: nil).isEmpty)
            #expect(try await store.graph(id: first.instance.id)?.run.status == .cancelled)
            // An ended graph is not changed again.
            let again = try await store.change(graph: first.instance.id, isolation: nil) { _ in
                Issue.record("decide ran for an ended graph")
                return nil
            }
            #expect(again == nil)
            try await store.create(try begun(target: "node-a"))
        }
    }

    @Test("a decision that throws stores nothing", arguments: StoreKind.allCases)
    func throwingDecisionStoresNothing(kind: StoreKind) async throws {
        try await withGraphStore(kind) { store in
            let change = try begun(target: nil)
            try await store.create(change)
            await #expect(throws: TestFailure.self) {
                try await store.change(graph: change.instance.id, isolation: nil) { current in
                    var instance = current
                    _ = instance.run.cancel()
                    throw TestFailure("injected")
                }
            }
            #expect(try await store.graph(id: change.instance.id)?.run.status == .running)
        }
    }

    @Test("changes to one graph from many tasks at once are applied one after another", arguments: StoreKind.allCases)
    func concurrentChangesAreSerialized(kind: StoreKind) async throws {
        try await withGraphStore(kind) { store in
            let change = try begun(target: nil)
            try await store.create(change)
            let id = change.instance.id
            // Each change reads the counter and writes it plus one: a lost update would show as a smaller count.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        _ = try await store.change(graph: id, isolation: nil) { current in
                            var instance = current
                            let count = instance.context["count"].flatMap { if case .number(let n) = $0 { n } else { nil } } ?? 0
                            instance.context["count"] = .number(count + 1)
                            return GraphChange(instance: instance, outbox: [])
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await store.graph(id: id)?.context["count"] == .number(20))
        }
    }

    @Test(
        "a change that nobody awaits: committed when its completion hears it, in turn with the graph's other changes; a decision that throws or finds nothing stores nothing",
        arguments: StoreKind.allCases)
    func changeWithoutWaiting(kind: StoreKind) async throws {
        try await withGraphStore(kind) { store in
            let begun = try begun(target: nil)
            try await store.create(begun)
            let id = begun.instance.id
            let change = { @Sendable (decide: @escaping @Sendable (GraphInstance) throws -> GraphChange?) async throws -> GraphChange? in
                try await withCheckedThrowingContinuation { continuation in
                    store.change(graph: id, decide) { continuation.resume(with: $0) }
                }
            }
            await #expect(throws: TestFailure.self) {
                try await change { current in
                    var instance = current
                    _ = instance.run.cancel()
                    throw TestFailure("injected")
                }
            }
            #expect(try await change { _ in nil } == nil)
            #expect(try await store.graph(id: id)?.run.status == .running)
            // Twenty at once, none awaited in between: each reads what the one before stored.
            let counted = Locked(0)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                            store.change(
                                graph: id,
                                { current in
                                    var instance = current
                                    let count = instance.context["count"].flatMap { if case .number(let n) = $0 { n } else { nil } } ?? 0
                                    instance.context["count"] = .number(count + 1)
                                    return GraphChange(instance: instance, outbox: [])
                                }
                            ) { result in
                                if case .success(.some) = result { counted.withLock { $0 += 1 } }
                                done.resume()
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(counted.withLock { $0 } == 20)
            #expect(try await store.graph(id: id)?.context["count"] == .number(20))
            let ended = try await change { current in
                var instance = current
                _ = instance.run.cancel()
                return GraphChange(instance: instance, outbox: [])
            }
            #expect(ended?.instance.run.status == .cancelled)
            #expect(try await store.graph(id: id)?.run.status == .cancelled)
            #expect(try await store.activeGraphs(target: nil, name: nil).isEmpty)
            #expect(
                try await change { _ in
                    Issue.record("decide ran for an ended graph")
                    return nil
                } == nil)
        }
    }

    @Test(
        "outbox messages wait out their writer's grace, are leased to one sweeper, and are dropped once their graph ends",
        arguments: StoreKind.allCases)
    func outbox(kind: StoreKind) async throws {
        try await withGraphStore(kind) { store in
            let first = try begun(target: nil)
            try await store.create(first)
            let work = first.outbox.filter(\.onlyWhileGraphActive)
            #expect(work.count == 1, "noop-1 is handed to the Scheduler")
            #expect(try await store.takeDueMessages(limit: 10, lease: .seconds(10)).isEmpty, "its writer sends it first")
            // The writer's send failed: due again soon, for any sweeper, and only one takes it.
            for message in first.outbox { try await store.postponeMessage(message.id, by: .zero) }
            let taken = try await store.takeDueMessages(limit: 10, lease: .seconds(10))
            #expect(Set(taken.map(\.id)) == Set(first.outbox.map(\.id)))
            #expect(taken.first { $0.id == work[0].id }?.body == work[0].body)
            #expect(taken.allSatisfy { $0.attempts == 1 })
            #expect(try await store.takeDueMessages(limit: 10, lease: .seconds(10)).isEmpty, "leased to the first sweeper")
            try await store.removeMessages(taken.map(\.id))
            // Work for a graph that ended meanwhile is dropped, not sent; its announcements still go.
            let second = try begun(target: nil)
            try await store.create(second)
            let cancelled = try await store.change(graph: second.instance.id, isolation: nil) { current in
                var instance = current
                let messages = Self.planner.carryOut(instance.run.cancel(), on: &instance)
                return GraphChange(instance: instance, outbox: messages)
            }
            for message in second.outbox + (cancelled?.outbox ?? []) { try await store.postponeMessage(message.id, by: .zero) }
            let left = try await store.takeDueMessages(limit: 10, lease: .seconds(10))
            #expect(left.allSatisfy { !$0.onlyWhileGraphActive }, "\(left.map(\.routingKey))")
            #expect(left.contains { $0.routingKey.hasPrefix("graph.finished.") })
        }
    }
}

@Suite("The task graph database setting")
struct GraphStoreLocationTests {
    @Test("a path is a SQLite file; a postgres URL names a shared database, with libpq's defaults")
    func parses() throws {
        #expect(try GraphStoreLocation("/var/lib/rackbus/taskgraph.sqlite") == .sqlite(path: "/var/lib/rackbus/taskgraph.sqlite"))
        #expect(try GraphStoreLocation(":memory:") == .sqlite(path: ":memory:"))
        #expect(
            try GraphStoreLocation("postgres://tg:s%40cret@db.example:6432/workflows?sslmode=require")
                == .postgres(
                    .init(host: "db.example", port: 6432, username: "tg", password: "s@cret", database: "workflows", tls: .require)))
        #expect(
            try GraphStoreLocation("postgresql://db.example")
                == .postgres(.init(host: "db.example", port: 5432, username: "rackbus", password: nil, database: "rackbus", tls: .prefer)))
    }

    @Test(
        "a setting it cannot use is refused with a clear error, never with the password",
        arguments: [
            "", "postgres://", "postgres://u:pw@db/x?sslmode=verify-full", "postgres://u:pw@db/x?timeout=3", "postgres://db:70000/x",
        ])
    func refuses(setting: String) {
        #expect(throws: GraphStoreLocation.ParseError.self) { try GraphStoreLocation(setting) }
        do {
            _ = try GraphStoreLocation(setting)
        } catch {
            #expect(!error.description.contains("pw"), "\(error)")
        }
    }

    @Test("logs show a PostgreSQL URL without its password")
    func redacts() throws {
        let location = try GraphStoreLocation("postgres://tg:secret@db.example/workflows")
        #expect(location.description == "postgres://tg@db.example:5432/workflows")
    }
}

@Suite("A damaged task graph database")
struct GraphStoreDamageTests {
    @Test(
        "a wrongly typed column makes opening fail with an error naming the file, never a crash",
        arguments: ["UPDATE graph SET id = x'00ff'"])
    func damagedColumn(sql: String) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-graphs-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("taskgraph.sqlite").path
        let store = try await SQLiteGraphStore.open(path: path)
        try await store.create(try GraphStoreTests().begun(target: nil))
        let queue = try DatabaseQueue(path: path)
        try await queue.write { try $0.execute(sql: sql) }
        let error = await #expect(throws: (any Error).self) { _ = try await SQLiteGraphStore.open(path: path) }
        #expect("\(error.map { "\($0)" } ?? "")".contains(path), "the error names the file: \(String(describing: error))")
    }

    @Test("a graph whose state this version cannot read is skipped, and the others load")
    func unreadableStateIsSkipped() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-graphs-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("taskgraph.sqlite").path
        let store = try await SQLiteGraphStore.open(path: path)
        let (broken, kept) = (try GraphStoreTests().begun(target: nil), try GraphStoreTests().begun(target: nil))
        try await store.create(broken)
        try await store.create(kept)
        let queue = try DatabaseQueue(path: path)
        try await queue.write { try $0.execute(sql: "UPDATE graph SET state = 42 WHERE id = ?", arguments: [broken.instance.id]) }
        let reopened = try await SQLiteGraphStore.open(path: path)
        #expect(try await reopened.activeGraphs(target: nil, name: nil).map(\.id) == [kept.instance.id])
    }
}

@Suite("Upgrading a task graph database")
struct GraphStoreUpgradeTests {
    @Test("a graph, an unsent message and a finished task stored by the version before the last two upgrades are all there after them")
    func headersMoveOut() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-graphs-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("taskgraph.sqlite").path
        let begun = try GraphStoreTests().begun(target: "upgraded-node")
        let instance = begun.instance
        // The file as the version before this one left it: the header in the graph's row.
        let queue = try DatabaseQueue(path: path)
        try SQLiteGraphStore.migrator.migrate(queue, upTo: "v5: finished tasks by age")
        try await queue.write { db in
            try db.execute(
                sql: "INSERT INTO graph (id, name, target, active, header, state, updatedAt) VALUES (?, ?, ?, 1, ?, ?, 0)",
                arguments: [
                    instance.id, instance.plan.definition.injectableName, instance.target, try JSONEncoder().encode(instance.header),
                    try JSONEncoder().encode(instance.state),
                ])
            try db.execute(
                sql: """
                    INSERT INTO outbox (id, graphId, exchange, routingKey, type, body, persistent, mandatory, onlyWhileGraphActive,
                    notBefore, attempts) VALUES ('unsent', ?, 'on.scheduler', 'schedule', 'Object', x'7b7d', 1, 1, 1, 0, 0)
                    """, arguments: [instance.id])
            try db.execute(
                sql: "INSERT INTO finishedTask (taskId, body, finishedAt) VALUES ('finished', ?, ?)",
                arguments: [
                    try JSONEncoder().encode(
                        TaskFinished(
                            taskId: "finished", taskName: "Task.noop", label: "noop", graphId: instance.id, graphName: "noop",
                            state: .succeeded)),
                    Date().timeIntervalSince1970,
                ])
        }
        try queue.close()
        let store = try await SQLiteGraphStore.open(path: path)
        let loaded = try #require(try await store.activeGraphs(target: "upgraded-node", name: nil).first)
        #expect(loaded == instance)
        // The unsent message and the finished task came along.
        #expect(try await store.takeDueMessages(limit: 10, lease: .seconds(10)).map(\.id) == ["unsent"])
        #expect(try await store.finishedReport(taskId: "finished")?.state == .succeeded)
        let changed = try await store.change(graph: instance.id, isolation: nil) { current in
            var next = current
            _ = next.run.cancel()
            return GraphChange(instance: next, outbox: [])
        }
        #expect(changed?.instance.isActive == false)
        let reopened = try await SQLiteGraphStore.open(path: path)
        #expect(try await reopened.graph(id: instance.id)?.plan == instance.plan)
        #expect(try await reopened.activeGraphs(target: nil, name: nil).isEmpty)
    }
}
