import BusCore
import Foundation
import GRDB
import StoreSupport

/// One graph instance: its compiled plan, its evaluation state, the shared context and the task
/// ids. Stored in two parts: what never changes (written once) and what does (rewritten on every
/// change; encoding the whole plan each time was most of the CPU a task cost).
struct GraphInstance: Sendable, Equatable {
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

    struct Header: Codable {
        var plan: GraphPlan
        var target: String?
        var taskIDs: [String: String]
        var createdAt: Date
    }

    struct State: Codable {
        var progress: GraphRun.Progress
        var context: [String: JSONValue]
        var errors: [String: String]
    }

    var header: Header { Header(plan: plan, target: target, taskIDs: taskIDs, createdAt: createdAt) }
    var state: State { State(progress: run.progress, context: context, errors: errors) }

    init(id: String, header: Header, state: State) {
        self.init(
            id: id, plan: header.plan, run: GraphRun(plan: header.plan, progress: state.progress), target: header.target,
            context: state.context,
            taskIDs: header.taskIDs, errors: state.errors, createdAt: header.createdAt)
    }

    init(
        id: String, plan: GraphPlan, run: GraphRun, target: String?, context: [String: JSONValue], taskIDs: [String: String],
        errors: [String: String], createdAt: Date
    ) {
        self.id = id
        self.plan = plan
        self.run = run
        self.target = target
        self.context = context
        self.taskIDs = taskIDs
        self.errors = errors
        self.createdAt = createdAt
    }
}

/// Definitions and graph instances in SQLite (GRDB). Calls suspend on GRDB's queue; none blocks
/// the cooperative pool.
final class GraphStore: Sendable {
    private let database: DatabaseQueue
    /// Graph state and finished tasks, the writes of every task, go through group commit.
    private let writer: BatchedWriter

    private init(database: DatabaseQueue) {
        self.database = database
        self.writer = BatchedWriter(database: database)
    }

    static func open(path: String) async throws -> GraphStore {
        GraphStore(database: try await DatabaseQueue.open(path: path, migrator: migrator))
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
                table.column("header", .blob).notNull()
                table.column("state", .blob).notNull()
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
        try await saveDefinition(definition, named: definition.injectableName, table: "taskDefinition")
    }

    func saveGraphDefinition(_ definition: GraphDefinition) async throws {
        try await saveDefinition(definition, named: definition.injectableName, table: "graphDefinition")
    }

    /// `table` is one of the two definition tables of the migrator, never input.
    private func saveDefinition(_ definition: some Encodable, named name: String, table: String) async throws {
        let body = try JSONEncoder().encode(definition)
        try await database.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO \(table) (injectableName, body) VALUES (?, ?)", arguments: [name, body])
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

    /// Stores a new instance, plan and all.
    func create(_ instance: GraphInstance, isolation: isolated (any Actor)? = #isolation) async throws {
        let header = try JSONEncoder().encode(instance.header)
        let state = try JSONEncoder().encode(instance.state)
        try await writer.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO graph (id, name, target, active, header, state, updatedAt) VALUES (?, ?, ?, ?, ?, ?, ?)",
                arguments: [
                    instance.id, instance.plan.definition.injectableName, instance.target, instance.isActive, header, state,
                    Date().timeIntervalSince1970,
                ])
        }
    }

    /// Stores what changed: the run's progress, the context and the errors.
    func update(_ instance: GraphInstance, isolation: isolated (any Actor)? = #isolation) async throws {
        let state = try JSONEncoder().encode(instance.state)
        let (id, isActive) = (instance.id, instance.isActive)
        try await writer.write { db in
            try db.execute(
                sql: "UPDATE graph SET active = ?, state = ?, updatedAt = ? WHERE id = ?",
                arguments: [isActive, state, Date().timeIntervalSince1970, id])
        }
    }

    /// Records a task's end before it is reported, so that a redelivered `run` after a crash is
    /// answered with the same report instead of running the task again.
    /// `body` is the report as JSON, the bytes that are then published.
    func recordFinished(taskId: String, body: [UInt8]) async throws {
        let body = Data(body)
        try await writer.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO finishedTask (taskId, body, finishedAt) VALUES (?, ?, ?)",
                arguments: [taskId, body, Date().timeIntervalSince1970])
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
            try Row.fetchAll(db, sql: "SELECT id, header, state FROM graph WHERE active = 1").compactMap(Self.instance)
        }
    }

    func graph(id: String) async throws -> GraphInstance? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT id, header, state FROM graph WHERE id = ?", arguments: [id]).flatMap(Self.instance)
        }
    }

    /// A row this version cannot read is skipped rather than stopping the service.
    private static func instance(_ row: Row) -> GraphInstance? {
        let decoder = JSONDecoder()
        guard let header = try? decoder.decode(GraphInstance.Header.self, from: row["header"] as Data),
            let state = try? decoder.decode(GraphInstance.State.self, from: row["state"] as Data)
        else { return nil }
        return GraphInstance(id: row["id"], header: header, state: state)
    }
}
