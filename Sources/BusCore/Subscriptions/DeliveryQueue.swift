import Synchronization

/// The hand-off from the I/O thread to the task that iterates a subscription.
///
/// A concrete (non-generic) queue rather than `AsyncStream`: in profiles, the stream's generic
/// storage cost more per delivery than everything else on the consuming side put together.
/// One task consumes; the I/O thread produces. The consumer takes everything buffered in one
/// lock, so a burst costs one lock and at most one wake-up.
final class DeliveryQueue: Sendable {
    private struct State {
        var buffer: [ConsumedDelivery] = []
        var waiter: CheckedContinuation<[ConsumedDelivery], Never>?
        var finished = false
        var consumerGone = false

        /// Everything buffered, or nil when nothing is.
        mutating func takeBuffer() -> [ConsumedDelivery]? {
            guard !buffer.isEmpty else { return nil }
            defer { buffer.removeAll(keepingCapacity: true) }
            return buffer
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

    /// Producer side (I/O thread): buffers a delivery without waking the consumer. Returns
    /// `true` when the consumer is waiting, so the producer must call ``wake()`` once it has
    /// added everything it read in this pass: one wake-up per burst instead of one per message.
    func append(_ delivery: ConsumedDelivery) -> Bool {
        state.withLock { state in
            guard !state.finished else { return false }
            state.buffer.append(delivery)
            return state.waiter != nil
        }
    }

    /// Hands everything buffered to a waiting consumer.
    func wake() {
        let (waiter, ready) = state.withLock { state -> (CheckedContinuation<[ConsumedDelivery], Never>?, [ConsumedDelivery]) in
            guard let waiter = state.waiter, let ready = state.takeBuffer() else { return (nil, []) }
            state.waiter = nil
            return (waiter, ready)
        }
        waiter?.resume(returning: ready)
    }

    /// Ends the sequence: the consumer drains what is buffered, then gets `nil`.
    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<[ConsumedDelivery], Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: [])
    }

    /// Consumer side: everything buffered, waiting if there is nothing yet. An empty result
    /// means the queue is finished (or the waiting task was cancelled).
    func takeAll() async -> [ConsumedDelivery] {
        if let ready = takeBuffered() { return ready }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<[ConsumedDelivery], Never>) in
                let immediate = state.withLock { state -> [ConsumedDelivery]? in
                    if let ready = state.takeBuffer() { return ready }
                    if state.finished || Task.isCancelled { return [] }
                    state.waiter = continuation
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            self.consumerGone()
        }
    }

    private func takeBuffered() -> [ConsumedDelivery]? {
        state.withLock { state in state.takeBuffer() ?? (state.finished ? [] : nil) }
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
