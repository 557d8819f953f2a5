import GRDB
import Synchronization

/// Group commit: writes that arrive while a transaction commits go together into the next
/// one. Each caller still returns only once its own write is committed, so "store, then
/// acknowledge" keeps its meaning; under load one transaction carries many writes instead of
/// paying a commit (and a hop to GRDB's queue) for each.
///
/// A write that throws fails alone: everything it did is undone (savepoints) and the others in
/// its transaction commit. A write must touch nothing but the database: after a failure, the
/// others of its batch run again.
public final class BatchedWriter: Sendable {
    public typealias Write = @Sendable (Database) throws -> Void

    /// Hears whether a write was committed, on GRDB's thread: it must be short and not block.
    public typealias Completion = @Sendable (Result<Void, any Error>) -> Void

    private struct Pending {
        var write: Write
        var done: Completion
    }

    private struct State {
        var queued: [Pending] = []
        var committing = false
    }

    private let database: DatabaseQueue
    private let state = Mutex(State())
    /// How many writes at most go into one transaction.
    private let maximumBatch: Int

    public init(database: DatabaseQueue, maximumBatch: Int = 512) {
        self.database = database
        self.maximumBatch = max(1, maximumBatch)
    }

    /// Writes waiting for the next transaction.
    var queuedCount: Int { state.withLock { $0.queued.count } }

    /// Runs `write` in a transaction shared with the writes queued alongside it. Writes are
    /// committed in the order they were queued; the queueing happens on the caller's actor, so
    /// two writes one actor makes in turn are stored in that order.
    public func write(isolation: isolated (any Actor)? = #isolation, _ write: @escaping Write) async throws {
        // Unsafe: resumed exactly once, by the completion, and a checked one costs an allocation per write.
        try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
            self.write(write) { continuation.resume(with: $0) }
        }
    }

    /// ``write(isolation:_:)`` for code that does not wait: `completion` hears the outcome once
    /// the transaction has ended, on GRDB's thread, so that no task is woken for it.
    public func write(_ write: @escaping Write, completion: @escaping Completion) {
        let startsCommitting = state.withLock { state -> Bool in
            state.queued.append(Pending(write: write, done: completion))
            guard !state.committing else { return false }
            state.committing = true
            return true
        }
        if startsCommitting { commitNextBatch() }
    }

    /// Commits what is queued, then whatever arrived meanwhile, until nothing is left.
    private func commitNextBatch() {
        // GRDB runs this on its own serial queue, off the cooperative pool.
        database.asyncWriteWithoutTransaction { db in
            // Taken here, as the transaction begins, not when the commit was asked for: writes
            // queued while it waited for the writer's queue go in with it.
            let batch = self.state.withLock { state -> [Pending] in
                let count = min(self.maximumBatch, state.queued.count)
                let batch = Array(state.queued.prefix(count))
                state.queued.removeFirst(count)
                return batch
            }
            let outcome = Result { try Self.commit(batch.map(\.write), in: db) }
            let more = self.state.withLock { state -> Bool in
                if state.queued.isEmpty { state.committing = false }
                return state.committing
            }
            switch outcome {
            case .success(let failures):
                for (pending, failure) in zip(batch, failures) { pending.done(failure.map { .failure($0) } ?? .success(())) }
            case .failure(let error):
                // The transaction could not begin or commit: none of the batch is stored.
                for pending in batch { pending.done(.failure(error)) }
            }
            if more { self.commitNextBatch() }
        }
    }

    /// Runs `writes` in one transaction and returns each one's failure. Only when a write fails
    /// is the batch done again, each write in a savepoint of its own (writes touch nothing but
    /// the database). Its statements are prepared once, not at every commit as GRDB's
    /// transactions and savepoints are: four statements parsed per commit showed in profiles.
    private static func commit(_ writes: [Write], in db: Database) throws -> [(any Error)?] {
        try db.cachedStatement(sql: "BEGIN DEFERRED TRANSACTION").execute()
        var failures = [(any Error)?](repeating: nil, count: writes.count)
        do {
            do {
                for write in writes { try write(db) }
            } catch {
                try rollBack(db)
                try db.cachedStatement(sql: "BEGIN DEFERRED TRANSACTION").execute()
                for (index, write) in writes.enumerated() {
                    try db.cachedStatement(sql: "SAVEPOINT write").execute()
                    do {
                        try write(db)
                    } catch {
                        failures[index] = error
                        try db.cachedStatement(sql: "ROLLBACK TO SAVEPOINT write").execute()
                    }
                    try db.cachedStatement(sql: "RELEASE SAVEPOINT write").execute()
                }
            }
            try db.cachedStatement(sql: "COMMIT TRANSACTION").execute()
        } catch {
            try? rollBack(db)
            throw error
        }
        return failures
    }

    /// Some errors (a full disk, I/O) end the transaction by themselves.
    private static func rollBack(_ db: Database) throws {
        if db.isInsideTransaction { try db.cachedStatement(sql: "ROLLBACK TRANSACTION").execute() }
    }
}
