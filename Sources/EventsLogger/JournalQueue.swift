import Synchronization

/// Records waiting for the journal. The receiving tasks append without waiting; one writer takes
/// everything queued at once and stores it in one transaction, so a burst costs one write.
/// Bounded: beyond `capacity` waiting records, new ones are dropped and counted.
final class JournalQueue: Sendable {
    private struct State {
        var records: [JournalRecord] = []
        var waiter: CheckedContinuation<[JournalRecord], Never>?
        var closed = false
    }

    private let state = Mutex(State())
    private let capacity: Int

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    /// Queues a record; returns false when it was dropped (queue full or closed).
    func append(_ record: JournalRecord) -> Bool {
        let (accepted, waiter) = state.withLock { state -> (Bool, CheckedContinuation<[JournalRecord], Never>?) in
            guard !state.closed, state.records.count < capacity else { return (false, nil) }
            if let waiter = state.waiter {
                state.waiter = nil
                return (true, waiter)
            }
            state.records.append(record)
            return (true, nil)
        }
        waiter?.resume(returning: [record])
        return accepted
    }

    /// Everything queued, waiting while there is nothing. Empty once the queue is closed and drained.
    /// Not cancellable: the writer ends by ``close()``, so nothing taken is ever lost to a cancellation.
    func takeAll() async -> [JournalRecord] {
        await withCheckedContinuation { (continuation: CheckedContinuation<[JournalRecord], Never>) in
            let ready = state.withLock { state -> [JournalRecord]? in
                if !state.records.isEmpty || state.closed {
                    defer { state.records.removeAll(keepingCapacity: true) }
                    return state.records
                }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Stops intake; the writer drains what is left, then gets an empty batch.
    func close() {
        let waiter = state.withLock { state -> CheckedContinuation<[JournalRecord], Never>? in
            state.closed = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: [])
    }
}
