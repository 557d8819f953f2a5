import Foundation
import GRDB

extension DatabaseQueue {
    /// Opens (creating if needed) the SQLite database at `path` and brings it up to date with
    /// `migrator`; `:memory:` gives a private in-memory one.
    ///
    /// Files use WAL with `synchronous = NORMAL`: durable across process crashes (the restart
    /// case), consistent across power cuts. Opening blocks, so it happens on a thread of its own,
    /// never on the cooperative pool; every later call goes through GRDB's own queue.
    ///
    /// `checkpointPages` is how many pages the WAL may hold before SQLite copies them into the
    /// database, and syncs both (SQLite's default is 1,000). A store written at every step of
    /// every task checkpoints less often with more: each checkpoint copies a hot page once
    /// however many times it changed, and costs two syncs.
    public static func open(path: String, migrator: DatabaseMigrator, checkpointPages: Int = 1_000) async throws -> DatabaseQueue {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<DatabaseQueue, any Error>) in
            Thread {
                do {
                    let inMemory = path == ":memory:"
                    if !inMemory {
                        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
                        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                    }
                    var configuration = Configuration()
                    configuration.prepareDatabase { db in
                        if !inMemory, !db.configuration.readonly {
                            try db.execute(sql: "PRAGMA journal_mode = WAL")
                            try db.execute(sql: "PRAGMA synchronous = NORMAL")
                            try db.execute(sql: "PRAGMA wal_autocheckpoint = \(max(1, checkpointPages))")
                        }
                    }
                    let queue =
                        inMemory
                        ? try DatabaseQueue(configuration: configuration) : try DatabaseQueue(path: path, configuration: configuration)
                    try migrator.migrate(queue)
                    continuation.resume(returning: queue)
                } catch {
                    continuation.resume(throwing: error)
                }
            }.start()
        }
    }
}
