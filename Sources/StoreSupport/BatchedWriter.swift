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
        /// The batch of the transaction under way.
        var inFlight: [Pending] = []
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
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
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
        database.asyncWrite(
            { db -> [(any Error)?] in
                // Taken here, as the transaction begins, not when the commit was asked for:
                // writes queued while it waited for the writer's queue go in with it.
                let writes = self.state.withLock { state -> [Write] in
                    let count = min(self.maximumBatch, state.queued.count)
                    state.inFlight = Array(state.queued.prefix(count))
                    state.queued.removeFirst(count)
                    return state.inFlight.map(\.write)
                }
                // One savepoint for the batch; only when a write fails is the batch done again,
                // each write in a savepoint of its own (writes touch nothing but the database).
                do {
                    try db.inSavepoint {
                        for write in writes { try write(db) }
                        return .commit
                    }
                    return Array(repeating: nil, count: writes.count)
                } catch {
                    return writes.map { write in
                        do {
                            try db.inSavepoint {
                                try write(db)
                                return .commit
                            }
                            return nil
                        } catch {
                            return error
                        }
                    }
                }
            },
            completion: { _, result in
                let (batch, more) = self.state.withLock { state -> ([Pending], Bool) in
                    var batch = state.inFlight
                    state.inFlight = []
                    if batch.isEmpty, case .failure = result {
                        // The transaction could not begin: what waits for it fails, not for ever.
                        let count = min(self.maximumBatch, state.queued.count)
                        batch = Array(state.queued.prefix(count))
                        state.queued.removeFirst(count)
                    }
                    if state.queued.isEmpty { state.committing = false }
                    return (batch, state.committing)
                }
                switch result {
                case .success(let failures):
                    for (pending, failure) in zip(batch, failures) { pending.done(failure.map { .failure($0) } ?? .success(())) }
                case .failure(let error):
                    // The commit itself failed: none of the batch is stored.
                    for pending in batch { pending.done(.failure(error)) }
                }
                if more { self.commitNextBatch() }
            })
    }
}
