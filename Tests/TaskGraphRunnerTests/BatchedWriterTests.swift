import BusTestSupport
import Dispatch
import GRDB
import Synchronization
import Testing

@testable import StoreSupport

/// Group commit (``BatchedWriter``), which every SQLite store uses for its writes.
@Suite("Group commit")
struct BatchedWriterTests {
    final class CommitCounter: TransactionObserver, Sendable {
        private let count = Mutex(0)
        var commits: Int { count.withLock { $0 } }
        func observes(eventsOfKind eventKind: DatabaseEventKind) -> Bool { true }
        func databaseDidChange(with event: DatabaseEvent) {}
        func databaseDidCommit(_ db: Database) { count.withLock { $0 += 1 } }
        func databaseDidRollback(_ db: Database) {}
    }

    /// An in-memory database with a table of names, its commits counted, and its writer's queue
    /// held until `open` is signalled: writes queue up meanwhile.
    static func heldDatabase() async throws -> (DatabaseQueue, CommitCounter, open: DispatchSemaphore) {
        let database = try DatabaseQueue()
        try await database.write { db in
            try db.execute(sql: "CREATE TABLE name (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE)")
        }
        let counter = CommitCounter()
        database.add(transactionObserver: counter, extent: .databaseLifetime)
        let open = DispatchSemaphore(value: 0)
        // Holds GRDB's own thread, never the cooperative pool's.
        database.asyncWriteWithoutTransaction { _ in open.wait() }
        return (database, counter, open)
    }

    static func insert(_ name: String) -> BatchedWriter.Write {
        { db in try db.execute(sql: "INSERT INTO name (name) VALUES (?)", arguments: [name]) }
    }

    static func names(_ database: DatabaseQueue) async throws -> [String] {
        try await database.read { db in try String.fetchAll(db, sql: "SELECT name FROM name ORDER BY id") }
    }

    @Test("writes queued while a commit waits for the writer's queue go into that commit, in the order they were queued")
    func queuedWritesJoinTheWaitingCommit() async throws {
        let (database, counter, open) = try await Self.heldDatabase()
        let writer = BatchedWriter(database: database)
        var writes: [Task<Void, any Error>] = []
        for index in 0..<5 {
            writes.append(Task { try await writer.write(Self.insert("w\(index)")) })
            // Queued before the next one starts: the order is known.
            try await eventually { writer.queuedCount == index + 1 }
        }
        open.signal()
        for write in writes { try await write.value }
        #expect(counter.commits == 1, "one transaction for the five")
        #expect(try await Self.names(database) == ["w0", "w1", "w2", "w3", "w4"])
    }

    @Test("a write that throws is undone entirely, and the others of its transaction commit")
    func failedWriteFailsAlone() async throws {
        let (database, counter, open) = try await Self.heldDatabase()
        let writer = BatchedWriter(database: database)
        let first = Task { try await writer.write(Self.insert("first")) }
        try await eventually { writer.queuedCount == 1 }
        let failing = Task {
            try await writer.write { db in
                try db.execute(sql: "INSERT INTO name (name) VALUES ('half')")
                try db.execute(sql: "INSERT INTO missing (name) VALUES ('never')")
            }
        }
        try await eventually { writer.queuedCount == 2 }
        let last = Task { try await writer.write(Self.insert("last")) }
        try await eventually { writer.queuedCount == 3 }
        open.signal()
        try await first.value
        await #expect(throws: DatabaseError.self) { try await failing.value }
        try await last.value
        #expect(counter.commits == 1)
        #expect(try await Self.names(database) == ["first", "last"], "the failed write's first statement is undone too")
    }

    @Test("each caller returns once its own write is committed; many at once take fewer transactions")
    func manyWriters() async throws {
        let database = try DatabaseQueue()
        try await database.write { db in
            try db.execute(sql: "CREATE TABLE name (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE)")
        }
        let counter = CommitCounter()
        database.add(transactionObserver: counter, extent: .databaseLifetime)
        let writer = BatchedWriter(database: database)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<200 {
                group.addTask {
                    try await writer.write(Self.insert("w\(index)"))
                    // Committed: a read sees it.
                    let stored = try await database.read { db in
                        try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM name WHERE name = ?)", arguments: ["w\(index)"])
                    }
                    #expect(stored == true)
                }
            }
            try await group.waitForAll()
        }
        #expect(try await Self.names(database).count == 200)
        #expect(counter.commits < 200)
    }
}
