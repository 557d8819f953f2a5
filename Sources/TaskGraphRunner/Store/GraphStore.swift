import BusCore
import Foundation
import GRDB

/// One graph instance as it is persisted: its compiled plan, its evaluation state, the shared
/// context and the task ids. Stored as one JSON document per graph, rewritten on every change.
struct GraphInstance: Codable, Sendable, Equatable {
    var id: String
    var plan: GraphPlan
    var run: GraphRun
    var target: String?
    var context: [String: JSONValue]
    /// Task id by label, fixed at creation so that every report names the same task.
    var taskIDs: [String: String]
    var errors: [String: String]
    var createdAt: Date

    var isActive: Bool { !run.status.isFinished }

    func label(ofTask taskID: String) -> String? {
        taskIDs.first { $0.value == taskID }?.key
    }
}

/// Definitions and graph instances in SQLite (GRDB). Calls suspend on GRDB's queue; none blocks
/// the cooperative pool.
final class GraphStore: Sendable {
    private let database: DatabaseQueue

    private init(database: DatabaseQueue) {
        self.database = database
    }

    static func open(path: String) async throws -> GraphStore {
        let database = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<DatabaseQueue, any Error>) in
            // Opening SQLite blocks; do it on a thread of its own.
            Thread {
                do {
                    if path != ":memory:" {
                        try FileManager.default.createDirectory(
                            at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
                    }
                    var configuration = Configuration()
                    configuration.prepareDatabase { db in
                        if path != ":memory:" {
                            try db.execute(sql: "PRAGMA journal_mode = WAL")
                            try db.execute(sql: "PRAGMA synchronous = NORMAL")
                        }
                    }
                    let queue =
                        path == ":memory:"
                        ? try DatabaseQueue(configuration: configuration) : try DatabaseQueue(path: path, configuration: configuration)
                    try Self.migrator.migrate(queue)
                    continuation.resume(returning: queue)
                } catch {
                    continuation.resume(throwing: error)
                }
            }.start()
        }
        return GraphStore(database: database)
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: definitions and graphs") { db in
            try db.create(table: "taskDefinition") { table in
                table.primaryKey("injectableName", .text)
                table.column("body", .blob).notNull()
            }
            try db.create(table: "graphDefinition") { table in
                table.primaryKey("injectableName", .text)
                table.column("body", .blob).notNull()
            }
            try db.create(table: "graph") { table in
                table.primaryKey("id", .text)
                table.column("name", .text).notNull()
                table.column("target", .text)
                table.column("active", .boolean).notNull()
                table.column("body", .blob).notNull()
                table.column("updatedAt", .double).notNull()
            }
            try db.create(index: "graph_active_target", on: "graph", columns: ["active", "target"])
        }
        migrator.registerMigration("v2: finished tasks") { db in
            try db.create(table: "finishedTask") { table in
                table.primaryKey("taskId", .text)
                table.column("body", .blob).notNull()
                table.column("finishedAt", .double).notNull()
            }
        }
        return migrator
    }

    func saveTaskDefinition(_ definition: TaskDefinition) async throws {
        let body = try JSONEncoder().encode(definition)
        try await database.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO taskDefinition (injectableName, body) VALUES (?, ?)",
                arguments: [definition.injectableName, body])
        }
    }

    func saveGraphDefinition(_ definition: GraphDefinition) async throws {
        let body = try JSONEncoder().encode(definition)
        try await database.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO graphDefinition (injectableName, body) VALUES (?, ?)",
                arguments: [definition.injectableName, body])
        }
    }

    func definitions() async throws -> (tasks: [TaskDefinition], graphs: [GraphDefinition]) {
        try await database.read { db in
            let decoder = JSONDecoder()
            // A row this version cannot read is skipped rather than stopping the service.
            let tasks = try Data.fetchAll(db, sql: "SELECT body FROM taskDefinition").compactMap {
                try? decoder.decode(TaskDefinition.self, from: $0)
            }
            let graphs = try Data.fetchAll(db, sql: "SELECT body FROM graphDefinition").compactMap {
                try? decoder.decode(GraphDefinition.self, from: $0)
            }
            return (tasks, graphs)
        }
    }

    func save(_ instance: GraphInstance) async throws {
        let body = try JSONEncoder().encode(instance)
        try await database.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO graph (id, name, target, active, body, updatedAt) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [
                    instance.id, instance.plan.definition.injectableName, instance.target, instance.isActive, body,
                    Date().timeIntervalSince1970,
                ])
        }
    }

    /// Records a task's end before it is reported, so that a redelivered `run` after a crash is
    /// answered with the same report instead of running the task again.
    func recordFinished(_ report: TaskFinished) async throws {
        let body = try JSONEncoder().encode(report)
        try await database.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO finishedTask (taskId, body, finishedAt) VALUES (?, ?, ?)",
                arguments: [report.taskId, body, Date().timeIntervalSince1970])
        }
    }

    func finishedReport(taskId: String) async throws -> TaskFinished? {
        try await database.read { db in
            guard let body = try Data.fetchOne(db, sql: "SELECT body FROM finishedTask WHERE taskId = ?", arguments: [taskId]) else {
                return nil
            }
            return try? JSONDecoder().decode(TaskFinished.self, from: body)
        }
    }

    func activeGraphs() async throws -> [GraphInstance] {
        try await database.read { db in
            let decoder = JSONDecoder()
            return try Data.fetchAll(db, sql: "SELECT body FROM graph WHERE active = 1").compactMap {
                try? decoder.decode(GraphInstance.self, from: $0)
            }
        }
    }

    func graph(id: String) async throws -> GraphInstance? {
        try await database.read { db in
            guard let body = try Data.fetchOne(db, sql: "SELECT body FROM graph WHERE id = ?", arguments: [id]) else { return nil }
            return try? JSONDecoder().decode(GraphInstance.self, from: body)
        }
    }
}
