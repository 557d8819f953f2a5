import BusCore
import Foundation
import GRDB
import StoreSupport

/// A message on its way into the journal.
struct JournalRecord: Sendable, Equatable {
    var time: Int64
    var exchange: String
    var routingKey: String
    var kind: EventKind
    var nodeId: String?
    /// JSON text.
    var body: String
    /// The AMQP message id: a message the broker delivers again (after a reconnect) is stored once.
    var messageId: String? = nil
}

/// The journal: table `event` in SQLite (GRDB). Every call runs on GRDB's own serial queue;
/// callers suspend, they never block the cooperative pool.
final class EventJournal: Sendable {
    private let database: DatabaseQueue
    /// The file, for errors about its contents.
    private let path: String

    private init(database: DatabaseQueue, path: String) {
        self.database = database
        self.path = path
    }

    /// Opens (creating if needed) the journal at `path`; `:memory:` gives a private in-memory one.
    static func open(path: String) async throws -> EventJournal {
        EventJournal(database: try await DatabaseQueue.open(path: path, migrator: migrator), path: path)
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: event journal") { db in
            try db.create(table: "event") { table in
                table.autoIncrementedPrimaryKey("id")
                table.column("time", .integer).notNull()
                table.column("exchange", .text).notNull()
                table.column("routingKey", .text).notNull()
                table.column("kind", .text).notNull()
                table.column("nodeId", .text)
                table.column("body", .text).notNull()
            }
            try db.create(index: "event_on_nodeId_time", on: "event", columns: ["nodeId", "time"])
            try db.create(index: "event_on_kind_time", on: "event", columns: ["kind", "time"])
            try db.create(index: "event_on_time", on: "event", columns: ["time"])
        }
        migrator.registerMigration("v2: message ids") { db in
            try db.alter(table: "event") { table in table.add(column: "messageId", .text) }
            try db.create(index: "event_on_messageId", on: "event", columns: ["messageId"], unique: true)
        }
        return migrator
    }

    /// Appends records in one transaction; one whose message id is stored already is a
    /// redelivery, and is skipped.
    func insert(_ records: [JournalRecord]) async throws {
        guard !records.isEmpty else { return }
        try await database.write { db in
            let statement = try db.cachedStatement(
                sql: "INSERT OR IGNORE INTO event (time, exchange, routingKey, kind, nodeId, body, messageId) VALUES (?, ?, ?, ?, ?, ?, ?)")
            for record in records {
                try statement.execute(arguments: [
                    record.time, record.exchange, record.routingKey, record.kind.rawValue, record.nodeId, record.body, record.messageId,
                ])
            }
        }
    }

    /// The most recent `query.limit` matching entries, oldest first (ties in time by arrival).
    func entries(matching query: JournalQuery) async throws -> [JournalEntry] {
        var conditions: [String] = []
        var values: [DatabaseValue] = []
        if let nodeId = query.nodeId {
            conditions.append("nodeId = ?")
            values.append(nodeId.databaseValue)
        }
        if let kind = query.kind {
            conditions.append("kind = ?")
            values.append(kind.rawValue.databaseValue)
        } else if !query.includeLogs {
            conditions.append("kind != ?")
            values.append(EventKind.log.rawValue.databaseValue)
        }
        if let since = query.since {
            conditions.append("time >= ?")
            values.append(since.databaseValue)
        }
        if let until = query.until {
            conditions.append("time < ?")
            values.append(until.databaseValue)
        }
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        values.append(query.limit.databaseValue)
        let sql = """
            SELECT id, time, exchange, routingKey, kind, nodeId, body FROM event \(filter)
            ORDER BY time DESC, id DESC LIMIT ?
            """
        let arguments = values
        let path = self.path
        let newestFirst = try await database.read { db in
            try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments)).map { row in
                (
                    id: try row.decode(Int64.self, "id", in: path), time: try row.decode(Int64.self, "time", in: path),
                    exchange: try row.decode(String.self, "exchange", in: path),
                    routingKey: try row.decode(String.self, "routingKey", in: path), kind: try row.decode(String.self, "kind", in: path),
                    nodeId: try row.decode(String?.self, "nodeId", in: path), body: try row.decode(String.self, "body", in: path)
                )
            }
        }
        // Bodies are decoded off the database's queue, which the journal's writes share.
        let decoder = JSONDecoder()
        return newestFirst.reversed().map { row in
            JournalEntry(
                id: row.id, time: row.time, exchange: row.exchange, routingKey: row.routingKey,
                kind: EventKind(rawValue: row.kind) ?? .other,
                nodeId: row.nodeId, body: (try? decoder.decode(JSONValue.self, from: Data(row.body.utf8))) ?? .string(row.body))
        }
    }

    /// Removes entries older than `cutoff` (epoch ms) and, beyond that, all but the newest
    /// `maximumEntries` (by arrival). Returns how many it removed.
    func enforceRetention(olderThan cutoff: Int64, maximumEntries: Int) async throws -> Int {
        // In slices, so that a large backlog never holds the journal's writer for long.
        let slice = 10_000
        var removed = 0
        while true {
            let count = try await database.write { db in
                try db.execute(
                    sql: "DELETE FROM event WHERE id IN (SELECT id FROM event WHERE time < ? LIMIT ?)", arguments: [cutoff, slice])
                return db.changesCount
            }
            removed += count
            if count < slice { break }
        }
        while true {
            let count = try await database.write { db in
                // The id of the newest entry that does not fit; nothing when everything fits.
                let boundary = try Int64.fetchOne(
                    db, sql: "SELECT id FROM event ORDER BY id DESC LIMIT 1 OFFSET ?", arguments: [max(1, maximumEntries)])
                guard let boundary else { return 0 }
                try db.execute(
                    sql: "DELETE FROM event WHERE id IN (SELECT id FROM event WHERE id <= ? ORDER BY id LIMIT ?)",
                    arguments: [boundary, slice])
                return db.changesCount
            }
            removed += count
            if count < slice { break }
        }
        return removed
    }

    /// How many entries the journal holds.
    func count() async throws -> Int {
        try await database.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM event") ?? 0 }
    }
}
