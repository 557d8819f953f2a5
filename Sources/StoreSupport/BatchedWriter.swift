import GRDB
import Synchronization

/// Group commit: writes that arrive while a transaction commits go together into the next
/// one. Each caller still returns only once its own write is committed, so "store, then
/// acknowledge" keeps its meaning; under load one transaction carries many writes instead of
/// paying a commit (and a hop to GRDB's queue) for each.
///
/// A write that throws fails alone: SQLite undoes just that statement and the others in its
/// transaction commit.
public final class BatchedWriter: Sendable {
    public typealias Write = @Sendable (Database) throws -> Void

    private struct Pending {
        var write: Write
        var done: CheckedContinuation<Void, any Error>
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

    /// Runs `write` in a transaction shared with the writes queued alongside it. Writes are
    /// committed in the order they were queued; the queueing happens on the caller's actor, so
    /// two writes one actor makes in turn are stored in that order.
    public func write(isolation: isolated (any Actor)? = #isolation, _ write: @escaping Write) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let startsCommitting = state.withLock { state -> Bool in
                state.queued.append(Pending(write: write, done: continuation))
                guard !state.committing else { return false }
                state.committing = true
                return true
            }
            if startsCommitting { commitNextBatch() }
        }
    }

    /// Commits what is queued, then whatever arrived meanwhile, until nothing is left.
    private func commitNextBatch() {
        let batch = state.withLock { state -> [Pending] in
            let count = min(maximumBatch, state.queued.count)
            defer { state.queued.removeFirst(count) }
            if count == 0 { state.committing = false }
            return Array(state.queued.prefix(count))
        }
        guard !batch.isEmpty else { return }
        let writes = batch.map(\.write)
        // GRDB runs this on its own serial queue, off the cooperative pool.
        database.asyncWrite(
            { db -> [(any Error)?] in
                writes.map { write in
                    do {
                        try write(db)
                        return nil
                    } catch {
                        return error
                    }
                }
            },
            completion: { _, result in
                switch result {
                case .success(let failures):
                    for (pending, failure) in zip(batch, failures) {
                        if let failure { pending.done.resume(throwing: failure) } else { pending.done.resume() }
                    }
                case .failure(let error):
                    // The commit itself failed: none of the batch is stored.
                    for pending in batch { pending.done.resume(throwing: error) }
                }
                self.commitNextBatch()
            })
    }
}
