import BusCore
import Foundation
import GRDB
import StoreSupport
import Synchronization

/// Definitions and graph instances in SQLite (GRDB), for one TaskGraphRunner process: it keeps
/// the active graphs in memory and takes each graph's lock in memory too. Calls suspend on GRDB's
/// queue; none blocks the cooperative pool.
final class SQLiteGraphStore: GraphStore {
    let database: DatabaseQueue
    private let path: String
    /// Graph state, outbox and finished tasks, the writes of every task, go through group commit.
    private let writer: BatchedWriter
    private let turns = GraphTurns()
    private struct Memory {
        var active: [String: GraphInstance] = [:]
        /// Targets of graphs being created, so that two runs for one node cannot both pass the check.
        var reservedTargets: Set<String> = []
    }
    private let memory: Mutex<Memory>

    private init(database: DatabaseQueue, path: String, active: [GraphInstance]) {
        self.database = database
        self.path = path
        self.writer = BatchedWriter(database: database)
        self.memory = Mutex(Memory(active: Dictionary(active.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })))
    }

    /// WAL pages between checkpoints: about 40 MB (see ``DatabaseQueue/open(path:migrator:checkpointPages:)``).
    static let checkpointPages = 10_000

    static func open(path: String) async throws -> SQLiteGraphStore {
        let database = try await DatabaseQueue.open(path: path, migrator: migrator, checkpointPages: checkpointPages)
        let active = try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT id, header, state FROM graph LEFT JOIN graphHeader USING (id) WHERE active = 1").compactMap {
                try Self.instance($0, in: path)
            }
        }
        return SQLiteGraphStore(database: database, path: path, active: active)
    }

    static var migrator: DatabaseMigrator {
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
        migrator.registerMigration("v3: outbox") { db in
            try db.create(table: "outbox") { table in
                table.primaryKey("id", .text)
                table.column("graphId", .text).notNull()
                table.column("exchange", .text).notNull()
                table.column("routingKey", .text).notNull()
                table.column("type", .text).notNull()
                table.column("body", .blob).notNull()
                table.column("persistent", .boolean).notNull()
                table.column("mandatory", .boolean).notNull()
                table.column("onlyWhileGraphActive", .boolean).notNull()
                table.column("notBefore", .double).notNull()
                table.column("attempts", .integer).notNull()
            }
            try db.create(index: "outbox_notBefore", on: "outbox", columns: ["notBefore"])
        }
        migrator.registerMigration("v4: idempotency keys") { db in
            try db.alter(table: "graph") { table in table.add(column: "idempotencyKey", .text) }
            try db.create(index: "graph_idempotencyKey", on: "graph", columns: ["idempotencyKey"], unique: true)
        }
        migrator.registerMigration("v5: finished tasks by age") { db in
            try db.create(index: "finishedTask_finishedAt", on: "finishedTask", columns: ["finishedAt"])
        }
        // A header (the plan, some kilobytes) in the row that each task's end updates made SQLite
        // write it again, overflow pages and all, at every change: it moves to a table of its own.
        migrator.registerMigration("v6: headers apart from state") { db in
            try db.create(table: "graphHeader") { table in
                table.primaryKey("id", .text)
                table.column("header", .blob).notNull()
            }
            try db.execute(sql: "INSERT INTO graphHeader (id, header) SELECT id, header FROM graph")
            try db.alter(table: "graph") { table in table.drop(column: "header") }
        }
        // A commit writes a page of every tree that its rows touch. The outbox holds only unsent
        // messages and needs no index but its key; keyed tables without a rowid keep each row in
        // the key's tree alone.
        migrator.registerMigration("v7: fewer trees per write") { db in
            try db.execute(sql: "DROP INDEX outbox_notBefore")
            try db.create(table: "outboxKeyed", options: [.withoutRowID]) { table in
                table.primaryKey("id", .text)
                table.column("graphId", .text).notNull()
                table.column("exchange", .text).notNull()
                table.column("routingKey", .text).notNull()
                table.column("type", .text).notNull()
                table.column("body", .blob).notNull()
                table.column("persistent", .boolean).notNull()
                table.column("mandatory", .boolean).notNull()
                table.column("onlyWhileGraphActive", .boolean).notNull()
                table.column("notBefore", .double).notNull()
                table.column("attempts", .integer).notNull()
            }
            try db.execute(
                sql: """
                    INSERT INTO outboxKeyed SELECT id, graphId, exchange, routingKey, type, body, persistent, mandatory,
                    onlyWhileGraphActive, notBefore, attempts FROM outbox;
                    DROP TABLE outbox;
                    ALTER TABLE outboxKeyed RENAME TO outbox;
                    """)
            try db.create(table: "finishedTaskKeyed", options: [.withoutRowID]) { table in
                table.primaryKey("taskId", .text)
                table.column("body", .blob).notNull()
                table.column("finishedAt", .double).notNull()
            }
            try db.execute(
                sql: """
                    INSERT INTO finishedTaskKeyed SELECT taskId, body, finishedAt FROM finishedTask;
                    DROP TABLE finishedTask;
                    ALTER TABLE finishedTaskKeyed RENAME TO finishedTask;
                    """)
            try db.create(index: "finishedTask_finishedAt", on: "finishedTask", columns: ["finishedAt"])
        }
        // Every task's end is journaled, and an index by age made each journal write touch a
        // second tree. Task ids are time-ordered (version 7 UUIDs, made when their graph is), so
        // the key itself finds the old ones; a partial index keeps the few others (ids made
        // elsewhere or before) findable by age, and costs the time-ordered ones nothing.
        migrator.registerMigration("v8: finished tasks by key") { db in
            try db.execute(sql: "DROP INDEX finishedTask_finishedAt")
            try db.execute(
                sql: "CREATE INDEX finishedTask_unordered ON finishedTask (finishedAt) WHERE \(Self.notTimeOrdered)")
        }
        return migrator
    }

    /// True of a task id that is not a version 7 UUID, whose version digit is the 15th character.
    static let notTimeOrdered = "substr(taskId, 15, 1) != '7'"

    // MARK: Definitions

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

    /// One process owns the file: nobody else changes its definitions.
    func definitionsVersion() async throws -> Int64? { nil }

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

    // MARK: Graphs

    func create(_ change: GraphChange) async throws {
        let instance = change.instance
        // A retry of a request whose graph still runs: the key decides before the target does.
        if let key = instance.idempotencyKey, let existing = memory.withLock({ $0.active.values.first { $0.idempotencyKey == key } }) {
            throw GraphStoreError.alreadyCreated(existing.id)
        }
        if let target = instance.target {
            try memory.withLock { memory in
                if memory.reservedTargets.contains(target) || memory.active.values.contains(where: { $0.target == target }) {
                    throw GraphStoreError.targetBusy(target)
                }
                memory.reservedTargets.insert(target)
            }
        }
        defer { if let target = instance.target { memory.withLock { _ = $0.reservedTargets.remove(target) } } }
        let header = try instance.header.encoded()
        let state = try instance.state.encoded()
        let outbox = change.outbox
        let path = self.path
        try await writer.write { db in
            // Checked in the same write: two retries at once cannot both create.
            if let key = instance.idempotencyKey,
                let existing = try Row.fetchOne(db, sql: "SELECT id FROM graph WHERE idempotencyKey = ?", arguments: [key])
            {
                throw GraphStoreError.alreadyCreated(try existing.decode(String.self, "id", in: path))
            }
            try db.cachedStatement(
                sql: "INSERT INTO graph (id, name, target, active, state, updatedAt, idempotencyKey) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ).execute(
                arguments: [
                    instance.id, instance.plan.definition.injectableName, instance.target, instance.isActive, state,
                    Date().timeIntervalSince1970, instance.idempotencyKey,
                ])
            try db.cachedStatement(sql: "INSERT INTO graphHeader (id, header) VALUES (?, ?)").execute(arguments: [instance.id, header])
            try Self.insert(outbox, into: db)
        }
        if instance.isActive { memory.withLock { $0.active[instance.id] = instance } }
    }

    func change(
        graph id: String, isolation: isolated (any Actor)? = #isolation, _ decide: (GraphInstance) throws -> GraphChange?
    ) async throws -> GraphChange? {
        await turns.begin(id)
        defer { turns.end(id) }
        // Read under the graph's turn: a change stored while this one waited counts.
        guard let current = memory.withLock({ $0.active[id] }), let change = try decide(current) else { return nil }
        try await writer.write(try Self.write(change, of: id))
        // Memory follows the store: a failed write leaves both as they were.
        remember(change, of: id)
        return change
    }

    var changesWithoutTasks: Bool { true }

    /// ``change(graph:isolation:_:)`` without a task: `decide` runs at once if the graph's turn is
    /// free, or else on the thread that frees it, and `completion` hears the outcome on GRDB's
    /// thread once the write is committed.
    func change(
        graph id: String, _ decide: @escaping @Sendable (GraphInstance) throws -> GraphChange?,
        completion: @escaping @Sendable (Result<GraphChange?, any Error>) -> Void
    ) {
        turns.begin(id) {
            let decided: (change: GraphChange, write: BatchedWriter.Write)?
            do {
                decided = try self.memory.withLock({ $0.active[id] }).flatMap(decide).map { ($0, try Self.write($0, of: id)) }
            } catch {
                self.turns.end(id)
                completion(.failure(error))
                return
            }
            guard let decided else {
                self.turns.end(id)
                completion(.success(nil))
                return
            }
            self.writer.write(decided.write) { result in
                if case .success = result { self.remember(decided.change, of: id) }
                self.turns.end(id)
                completion(result.map { decided.change })
            }
        }
    }

    /// The write of a change: the graph's state, and its messages.
    private static func write(_ change: GraphChange, of id: String) throws -> BatchedWriter.Write {
        let state = try change.instance.state.encoded()
        let (isActive, outbox) = (change.instance.isActive, change.outbox)
        return { db in
            // `active` (indexed) is set only when the graph ends: an index entry set again, even
            // to the same value, is another page to write.
            if isActive {
                try db.cachedStatement(sql: "UPDATE graph SET state = ?, updatedAt = ? WHERE id = ?")
                    .execute(arguments: [state, Date().timeIntervalSince1970, id])
            } else {
                try db.cachedStatement(sql: "UPDATE graph SET active = 0, state = ?, updatedAt = ? WHERE id = ?")
                    .execute(arguments: [state, Date().timeIntervalSince1970, id])
            }
            try Self.insert(outbox, into: db)
        }
    }

    /// Memory follows the store, once a change is committed.
    private func remember(_ change: GraphChange, of id: String) {
        memory.withLock { $0.active[id] = change.instance.isActive ? change.instance : nil }
    }

    func activeGraphs(target: String?, name: String?) async throws -> [GraphInstance] {
        memory.withLock { memory in
            memory.active.values.filter { instance in
                (target == nil || instance.target == target) && (name == nil || instance.plan.definition.injectableName == name)
            }
        }
        .sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    func graph(id: String) async throws -> GraphInstance? {
        if let active = memory.withLock({ $0.active[id] }) { return active }
        return try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT id, header, state FROM graph LEFT JOIN graphHeader USING (id) WHERE id = ?", arguments: [id])
                .flatMap {
                    try Self.instance($0, in: self.path)
                }
        }
    }

    /// A graph this version cannot read is skipped rather than stopping the service; a damaged
    /// row (a NULL, a value of another type) is an error that names the file.
    private static func instance(_ row: Row, in path: String) throws -> GraphInstance? {
        let decoder = JSONDecoder()
        let id = try row.decode(String.self, "id", in: path)
        guard let header = try? decoder.decode(GraphInstance.Header.self, from: try row.decode(Data.self, "header", in: path)),
            let state = try? GraphInstance.State.decoded(from: try row.decode(Data.self, "state", in: path))
        else { return nil }
        return GraphInstance(id: id, header: header, state: state)
    }

    // MARK: Outbox

    private static func insert(_ messages: [OutboxMessage], into db: Database) throws {
        let notBefore = Date().timeIntervalSince1970 + OutboxMessage.grace.secondsValue
        for message in messages {
            try db.cachedStatement(
                sql: """
                    INSERT INTO outbox (id, graphId, exchange, routingKey, type, body, persistent, mandatory, onlyWhileGraphActive,
                    notBefore, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
                    """
            ).execute(
                arguments: [
                    message.id, message.graphId, message.exchange, message.routingKey, message.type, Data(message.body), message.persistent,
                    message.mandatory, message.onlyWhileGraphActive, notBefore,
                ])
        }
    }

    func takeDueMessages(limit: Int, lease: Duration) async throws -> [OutboxMessage] {
        let now = Date().timeIntervalSince1970
        return try await database.write { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT outbox.*, graph.active AS graphActive FROM outbox LEFT JOIN graph ON graph.id = outbox.graphId
                    WHERE notBefore <= ? ORDER BY notBefore LIMIT ?
                    """,
                arguments: [now, limit])
            var due: [OutboxMessage] = []
            for row in rows {
                let id = try row.decode(String.self, "id", in: path)
                let graphActive = try row.decode(Bool?.self, "graphActive", in: path) ?? false
                var message = try Self.message(row, in: path)
                guard !message.onlyWhileGraphActive || graphActive else {
                    // Work for an ended graph.
                    try db.execute(sql: "DELETE FROM outbox WHERE id = ?", arguments: [id])
                    continue
                }
                message.attempts += 1
                try db.execute(
                    sql: "UPDATE outbox SET notBefore = ?, attempts = ? WHERE id = ?",
                    arguments: [now + lease.secondsValue, message.attempts, id])
                due.append(message)
            }
            return due
        }
    }

    private static func message(_ row: Row, in path: String) throws -> OutboxMessage {
        OutboxMessage(
            id: try row.decode(String.self, "id", in: path), graphId: try row.decode(String.self, "graphId", in: path),
            exchange: try row.decode(String.self, "exchange", in: path), routingKey: try row.decode(String.self, "routingKey", in: path),
            type: try row.decode(String.self, "type", in: path), body: [UInt8](try row.decode(Data.self, "body", in: path)),
            persistent: try row.decode(Bool.self, "persistent", in: path), mandatory: try row.decode(Bool.self, "mandatory", in: path),
            onlyWhileGraphActive: try row.decode(Bool.self, "onlyWhileGraphActive", in: path),
            attempts: try row.decode(Int.self, "attempts", in: path))
    }

    func removeMessages(_ ids: [String]) async throws {
        guard !ids.isEmpty else { return }
        try await writer.write { db in
            let delete = try db.cachedStatement(sql: "DELETE FROM outbox WHERE id = ?")
            for id in ids { try delete.execute(arguments: [id]) }
        }
    }

    func postponeMessage(_ id: String, by delay: Duration) async throws {
        let notBefore = Date().timeIntervalSince1970 + delay.secondsValue
        try await writer.write { db in
            try db.execute(sql: "UPDATE outbox SET notBefore = ? WHERE id = ?", arguments: [notBefore, id])
        }
    }

    // MARK: Finished tasks

    /// Records a task's end before it is reported, so that a redelivered `run` after a crash is
    /// answered with the same report instead of running the task again.
    /// `body` is the report as JSON, the bytes that are then published.
    func recordFinished(taskId: String, body: [UInt8]) async throws {
        let body = Data(body)
        try await writer.write { db in
            try db.cachedStatement(sql: "INSERT OR REPLACE INTO finishedTask (taskId, body, finishedAt) VALUES (?, ?, ?)")
                .execute(arguments: [taskId, body, Date().timeIntervalSince1970])
        }
    }

    /// Neither delete reads the whole journal: time-ordered ids made before the cutoff are a
    /// range of the key (an id is made when its graph is, before its task ends), and the others
    /// are in the partial index by age.
    func forgetFinishedTasks(before cutoff: Date) async throws -> Int {
        let seconds = cutoff.timeIntervalSince1970
        let firstID = RandomUUID.firstTimeOrdered(atMillisecond: UInt64(max(0, seconds * 1000)))
        return try await database.write { db in
            try db.execute(sql: Self.forgetTimeOrdered, arguments: [firstID, seconds])
            let ordered = db.changesCount
            try db.execute(sql: Self.forgetOthers, arguments: [seconds])
            return ordered + db.changesCount
        }
    }

    static let forgetTimeOrdered = "DELETE FROM finishedTask WHERE taskId < ? AND finishedAt < ?"
    static let forgetOthers = "DELETE FROM finishedTask WHERE \(notTimeOrdered) AND finishedAt < ?"

    func finishedReport(taskId: String) async throws -> TaskFinished? {
        try await database.read { db in
            guard
                let body = try Data.fetchOne(db.cachedStatement(sql: "SELECT body FROM finishedTask WHERE taskId = ?"), arguments: [taskId])
            else {
                return nil
            }
            return try? JSONDecoder().decode(TaskFinished.self, from: body)
        }
    }
}

/// One change per graph at a time, in the order they asked, so that memory can follow the store
/// without losing a concurrent change.
final class GraphTurns: Sendable {
    /// Graphs whose turn is taken, with who waits for it next.
    private let waiting = Mutex<[String: [@Sendable () -> Void]]>([:])

    /// Takes graph `id`'s turn, waiting for it if it is taken.
    func begin(_ id: String) async {
        await withCheckedContinuation { continuation in begin(id) { continuation.resume() } }
    }

    /// Runs `body` with graph `id`'s turn: now, on this thread, if it is free, or else on the
    /// thread that ends the turn before it. `body` (or what it starts) ends the turn.
    func begin(_ id: String, then body: @escaping @Sendable () -> Void) {
        let free = waiting.withLock { waiting -> Bool in
            guard waiting[id] != nil else {
                waiting[id] = []
                return true
            }
            waiting[id]!.append(body)
            return false
        }
        if free { body() }
    }

    func end(_ id: String) {
        let next = waiting.withLock { waiting -> (@Sendable () -> Void)? in
            guard var queue = waiting[id], !queue.isEmpty else {
                waiting[id] = nil
                return nil
            }
            let next = queue.removeFirst()
            waiting[id] = queue
            return next
        }
        next?()
    }
}
