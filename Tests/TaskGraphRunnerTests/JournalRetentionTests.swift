import BusCore
import BusTestSupport
import Foundation
import GRDB
import Scheduler
import Testing

@testable import TaskGraphRunner

@Suite("The finished-task journal keeps what it must, and forgets what is old", .timeLimit(.minutes(2)))
struct JournalRetentionTests {
    @Test("tasks finished before the cutoff are forgotten, later ones kept", arguments: StoreKind.allCases)
    func forgetsByAge(kind: StoreKind) async throws {
        try await withGraphStore(kind) { store in
            let report = { (id: String) in
                TaskFinished(taskId: id, taskName: "Task.noop", label: "noop", graphId: "g", graphName: "Graph.G", state: .succeeded)
            }
            try await store.recordFinished(taskId: "old", body: try WireFormat.encode(report("old")))
            try await Task.sleep(for: .milliseconds(100))
            let cutoff = Date()
            try await Task.sleep(for: .milliseconds(100))
            try await store.recordFinished(taskId: "new", body: try WireFormat.encode(report("new")))
            #expect(try await store.forgetFinishedTasks(before: cutoff) == 1)
            #expect(try await store.finishedReport(taskId: "old") == nil)
            #expect(try await store.finishedReport(taskId: "new")?.taskId == "new")
            #expect(try await store.forgetFinishedTasks(before: cutoff) == 0)
        }
    }

    @Test(
        "time-ordered task ids are forgotten by age too: a task of a graph made before the cutoff that ended after it is kept",
        arguments: StoreKind.allCases)
    func forgetsTimeOrderedByAge(kind: StoreKind) async throws {
        try await withGraphStore(kind) { store in
            let report = { (id: String) in
                TaskFinished(taskId: id, taskName: "Task.noop", label: "noop", graphId: "g", graphName: "Graph.G", state: .succeeded)
            }
            let (old, longRunning) = (RandomUUID.timeOrdered(), RandomUUID.timeOrdered())
            try await store.recordFinished(taskId: old, body: try WireFormat.encode(report(old)))
            try await Task.sleep(for: .milliseconds(100))
            let cutoff = Date()
            try await Task.sleep(for: .milliseconds(100))
            let new = RandomUUID.timeOrdered()
            for id in [longRunning, new] { try await store.recordFinished(taskId: id, body: try WireFormat.encode(report(id))) }
            #expect(try await store.forgetFinishedTasks(before: cutoff) == 1)
            #expect(try await store.finishedReport(taskId: old) == nil)
            #expect(try await store.finishedReport(taskId: longRunning)?.taskId == longRunning)
            #expect(try await store.finishedReport(taskId: new)?.taskId == new)
        }
    }

    @Test(
        "on SQLite a journal write touches no index, and forgetting reads no more than it forgets; the WAL checkpoints every 10,000 pages")
    func sqliteJournalShape() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-journal-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try await SQLiteGraphStore.open(path: directory.appendingPathComponent("taskgraph.sqlite").path)
        try await store.database.read { db in
            #expect(try Int.fetchOne(db, sql: "PRAGMA wal_autocheckpoint") == 10_000)
            // The only index: a partial one, which time-ordered ids never enter.
            let indexes = try Row.fetchAll(db, sql: "PRAGMA index_list(finishedTask)").filter { ($0["origin"] as String?) == "c" }
            #expect(indexes.map { $0["name"] as String? } == ["finishedTask_unordered"])
            #expect(indexes.first?["partial"] == 1)
            let statements: [(String, StatementArguments)] = [
                (SQLiteGraphStore.forgetTimeOrdered, ["0", 0]), (SQLiteGraphStore.forgetOthers, [0]),
            ]
            for (statement, arguments) in statements {
                let plan = try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN \(statement)", arguments: arguments).map {
                    $0["detail"] as String? ?? ""
                }
                #expect(plan.contains { $0.hasPrefix("SEARCH") }, "\(statement): \(plan)")
                #expect(!plan.contains { $0.hasPrefix("SCAN") }, "\(statement): \(plan)")
            }
        }
    }

    @Test("by default finished tasks are kept 7 days, and older ones looked for hourly")
    func defaults() {
        let configuration = TaskGraphRunnerService.Configuration()
        #expect(configuration.finishedTaskRetention == .seconds(7 * 86_400))
        #expect(configuration.retentionInterval == .seconds(3_600))
    }

    @Test("a TaskGraphRunner forgets its finished tasks once their retention has passed")
    func serviceForgets() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-journal-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("taskgraph.sqlite").path
        try await TestBroker.withBus { bus in
            let runner = TaskGraphRunnerService(
                bus: bus,
                configuration: .init(database: path, finishedTaskRetention: .seconds(3), retentionInterval: .milliseconds(200)),
                logger: TestBroker.logger)
            let scheduler = SchedulerService(bus: bus, logger: TestBroker.logger)
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await runner.run() }
                group.addTask { try await scheduler.run() }
                defer { group.cancelAll() }
                await runner.waitUntilReady()
                _ = try await bus.call(RunTaskGraph(name: "Graph.noop-example"))
                #expect(try await finishedStatus(finished) == "succeeded")
                let journal = try DatabaseQueue(path: path)
                let count = { try await journal.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM finishedTask") ?? 0 } }
                #expect(try await count() > 0, "its tasks were journaled")
                try await eventually { try await count() == 0 }
            }
        }
    }

    @Test("rackbus up refuses a journal kept for no days, for more than ten years, or for a time it cannot read")
    func upRefusesBadRetention() async throws {
        for days in ["0", "3651", "a week"] {
            let failure = await #expect(throws: TestFailure.self) {
                _ = try await TestBroker.run(
                    ServiceProcess.executable.path, ["up", "--services", "taskgraph", "--url", TestBroker.url],
                    environment: ["RACKBUS_TASKGRAPH_JOURNAL_DAYS": days])
            }
            #expect("\(failure.map { "\($0)" } ?? "")".contains("the task journal must keep 1 to 3650 days"))
        }
    }
}
