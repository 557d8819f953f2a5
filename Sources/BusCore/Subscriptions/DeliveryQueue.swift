import DequeModule
import Synchronization

/// The hand-off from the I/O thread to the tasks that consume a subscription.
///
/// A concrete (non-generic) queue rather than `AsyncStream`: in profiles, the stream's generic
/// storage cost more per delivery than everything else on the consuming side put together.
/// Two ways to consume: a subscription's single iterator takes everything buffered in one lock
/// (``takeAll()``), so a burst costs one lock and at most one wake-up; an RPC server's workers
/// each take one delivery (``takeOne()``), and the I/O thread resumes an idle worker directly
/// instead of waking a dispatcher that then starts a task.
final class DeliveryQueue: Sendable {
    private struct Waiter {
        let continuation: UnsafeContinuation<Deque<ConsumedDelivery>, Never>
        let wantsAll: Bool
    }

    private struct State {
        var buffer: Deque<ConsumedDelivery> = []
        var waiters: Deque<Waiter> = []
        var finished = false
        var consumerGone = false

        /// What one consumer takes now, or nil when nothing is buffered. Taking everything
        /// moves the buffer out whole: no per-delivery copy, retain or release.
        mutating func take(all: Bool) -> Deque<ConsumedDelivery>? {
            guard !buffer.isEmpty else { return nil }
            guard all else { return [buffer.removeFirst()] }
            let taken = buffer
            buffer = Deque(minimumCapacity: taken.count)
            return taken
        }

        /// Pairs waiting consumers with buffered deliveries (or with the end, once finished).
        mutating func matchWaiters() -> [(UnsafeContinuation<Deque<ConsumedDelivery>, Never>, Deque<ConsumedDelivery>)] {
            var matched: [(UnsafeContinuation<Deque<ConsumedDelivery>, Never>, Deque<ConsumedDelivery>)] = []
            while let waiter = waiters.first {
                if let ready = take(all: waiter.wantsAll) {
                    matched.append((waiter.continuation, ready))
                } else if finished {
                    matched.append((waiter.continuation, []))
                } else {
                    break
                }
                waiters.removeFirst()
            }
            return matched
        }
    }

    private let state = Mutex(State())
    /// Tells the engine to cancel the consumer on the broker; runs at most once.
    private let onConsumerGone: @Sendable () -> Void

    init(onConsumerGone: @escaping @Sendable () -> Void) {
        self.onConsumerGone = onConsumerGone
    }

    /// The consumer stopped (cancelled, or dropped its subscription): stop delivering.
    func consumerGone() {
        let first = state.withLock { state -> Bool in
            defer { state.consumerGone = true }
            return !state.consumerGone
        }
        finish()
        if first { onConsumerGone() }
    }

    /// Producer side (I/O thread): buffers a delivery without waking anyone. Returns `true`
    /// when a consumer is waiting, so the producer must call ``wake()`` once it has added
    /// everything it read in this pass: one wake-up per burst instead of one per message.
    func append(_ delivery: ConsumedDelivery) -> Bool {
        state.withLock { state in
            guard !state.finished else { return false }
            state.buffer.append(delivery)
            return !state.waiters.isEmpty
        }
    }

    /// How many consumers wait for a delivery right now.
    var waitingCount: Int { state.withLock { $0.waiters.count } }

    /// Hands what is buffered to the waiting consumers.
    func wake() {
        let matched = state.withLock { $0.matchWaiters() }
        for (continuation, ready) in matched { continuation.resume(returning: ready) }
    }

    /// Ends the sequence: consumers drain what is buffered, then get nothing.
    func finish() {
        let matched = state.withLock { state in
            state.finished = true
            return state.matchWaiters()
        }
        for (continuation, ready) in matched { continuation.resume(returning: ready) }
    }

    /// Everything buffered, waiting if there is nothing yet. An empty result means the queue
    /// is finished (or the waiting task was cancelled).
    func takeAll() async -> Deque<ConsumedDelivery> {
        await take(all: true)
    }

    /// One delivery, waiting if there is none yet; nil once the queue is finished (or the
    /// waiting task was cancelled). Several tasks may wait at once; each gets its own.
    func takeOne() async -> ConsumedDelivery? {
        await take(all: false).first
    }

    private func take(all: Bool) async -> Deque<ConsumedDelivery> {
        if let ready = state.withLock({ state in state.take(all: all) ?? (state.finished ? [] : nil) }) {
            return ready
        }
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Deque<ConsumedDelivery>, Never>) in
                let immediate = state.withLock { state -> Deque<ConsumedDelivery>? in
                    if let ready = state.take(all: all) { return ready }
                    if state.finished || Task.isCancelled { return [] }
                    state.waiters.append(Waiter(continuation: continuation, wantsAll: all))
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            self.consumerGone()
        }
    }
}

/// The consumer's handle on a queue: when the last copy of a subscription goes away, the
/// subscription is cancelled on the broker too.
final class SubscriptionHandle: Sendable {
    let queue: DeliveryQueue

    init(queue: DeliveryQueue) {
        self.queue = queue
    }

    deinit {
        queue.consumerGone()
    }
}
