import Dispatch
import Synchronization

/// A bounded queue between producers that must never wait and one consumer that works in
/// batches: producers ``append(_:)`` under a lock and return; the consumer takes everything
/// queued at once, so a burst costs it one wake-up and one batch.
///
/// Bounded: once `capacity` elements wait, new ones are dropped (``append(_:)`` returns false
/// and the caller counts the drop). With `holdsTakenElements`, taken elements keep counting
/// against the capacity until the consumer gives their room back with ``release(_:)``, so the
/// bound covers what is being processed as well as what waits.
///
/// ``close()`` stops intake; the consumer then takes what is left, then gets an empty batch.
public final class BatchQueue<Element: Sendable>: Sendable {
    private enum Consumer {
        case task(CheckedContinuation<Void, Never>)
        case thread(DispatchSemaphore)

        func wake() {
            switch self {
            case .task(let continuation): continuation.resume()
            case .thread(let semaphore): semaphore.signal()
            }
        }
    }

    private struct State {
        var elements: [Element] = []
        /// Taken and not yet released (only with `holdsTakenElements`).
        var held = 0
        var accepted: UInt64 = 0
        var isClosed = false
        var consumer: Consumer?

        /// The batch for the consumer, or nil when it must wait.
        mutating func take(holding: Bool) -> [Element]? {
            guard !elements.isEmpty || isClosed else { return nil }
            let batch = elements
            elements.removeAll(keepingCapacity: true)
            if holding { held += batch.count }
            return batch
        }
    }

    public let capacity: Int
    private let holdsTakenElements: Bool
    private let state = Mutex(State())

    public init(capacity: Int, holdsTakenElements: Bool = false) {
        self.capacity = max(1, capacity)
        self.holdsTakenElements = holdsTakenElements
    }

    /// Elements waiting, plus those taken and not yet released when the queue holds them.
    public var count: Int { state.withLock { $0.elements.count + $0.held } }

    /// Elements accepted since the queue was made. The consumer takes them in this order, so it
    /// can tell when everything accepted before some moment has gone through.
    public var acceptedCount: UInt64 { state.withLock { $0.accepted } }

    /// Whether the consumer is suspended, waiting for elements (for tests).
    var isConsumerWaiting: Bool { state.withLock { $0.consumer != nil } }

    /// Queues `element` without waiting; returns false when it was dropped (full or closed).
    @discardableResult
    public func append(_ element: Element) -> Bool {
        let (accepted, consumer) = state.withLock { state -> (Bool, Consumer?) in
            guard !state.isClosed, state.elements.count + state.held < capacity else { return (false, nil) }
            state.elements.append(element)
            state.accepted += 1
            defer { state.consumer = nil }
            return (true, state.consumer)
        }
        consumer?.wake()
        return accepted
    }

    /// Everything queued, waiting while there is nothing; empty once the queue is closed and drained.
    /// Not cancellable: the consumer ends by ``close()``, so nothing taken is lost to a cancellation.
    /// One consumer at a time.
    public func takeAll() async -> [Element] {
        while true {
            var batch: [Element]?
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                batch = takeOrWait(as: .task(continuation))
                if batch != nil { continuation.resume() }
            }
            if let batch { return batch }
        }
    }

    /// ``takeAll()`` for a consumer on a thread of its own (one that does blocking I/O); blocks
    /// the calling thread, so never call it from the cooperative pool.
    @available(*, noasync, message: "blocks the thread; use takeAll() from async code")
    public func takeAllBlocking() -> [Element] {
        let wakeUp = DispatchSemaphore(value: 0)
        while true {
            if let batch = takeOrWait(as: .thread(wakeUp)) { return batch }
            wakeUp.wait()
        }
    }

    /// Gives back the room of `count` taken elements (with `holdsTakenElements`).
    public func release(_ count: Int) {
        state.withLock { state in
            precondition(count <= state.held, "released more elements than were taken")
            state.held -= count
        }
    }

    /// Stops intake; the consumer takes what is left, then gets an empty batch. Idempotent.
    public func close() {
        let consumer = state.withLock { state -> Consumer? in
            state.isClosed = true
            defer { state.consumer = nil }
            return state.consumer
        }
        consumer?.wake()
    }

    private func takeOrWait(as consumer: Consumer) -> [Element]? {
        state.withLock { state in
            if let batch = state.take(holding: holdsTakenElements) { return batch }
            precondition(state.consumer == nil, "BatchQueue has one consumer at a time")
            state.consumer = consumer
            return nil
        }
    }
}
