import Synchronization

/// The RPC correlation map: one slot per call in flight, keyed by the call's id.
///
/// Callers, the I/O thread (replies and deadlines) and cancellation handlers all touch it,
/// so it is a `Mutex`; every continuation is resumed exactly once, outside the lock. A call
/// cancelled before its continuation was registered leaves a tombstone, so that the late
/// registration fails at once instead of waiting for its deadline.
final class PendingCalls: Sendable {
    struct Slot {
        var continuation: CheckedContinuation<InboundDelivery, any Error>
        var deadline: ContinuousClock.Instant
        /// The connection generation the request went out on; `nil` while it waits to be sent.
        var sentOnGeneration: UInt64?
        /// `exchange:routingKey`, for error messages.
        var description: String
        var timeout: Duration
        /// A command's interim messages (acceptance, progress, questions) go here, on the I/O
        /// thread, so it must not block; each one restarts the deadline (an idle timeout).
        var interim: (@Sendable (InboundDelivery) -> Void)?
    }

    private struct State {
        var slots: [UInt64: Slot] = [:]
        var tombstones: Set<UInt64> = []
        var nextID: UInt64 = 0
        /// No call's deadline is earlier than this (`nil`: no call waits), so the I/O thread's
        /// check each turn costs one comparison until something is due.
        var earliestDeadline: ContinuousClock.Instant?
    }

    private let state = Mutex(State())

    func makeID() -> UInt64 {
        state.withLock { state in
            state.nextID &+= 1
            return state.nextID
        }
    }

    /// Registers a call. Returns `false` (and fails the continuation) if the call was cancelled first.
    func register(
        id: UInt64, deadline: ContinuousClock.Instant, timeout: Duration, description: String,
        continuation: CheckedContinuation<InboundDelivery, any Error>, interim: (@Sendable (InboundDelivery) -> Void)? = nil
    ) -> Bool {
        let accepted = state.withLock { state -> Bool in
            if state.tombstones.remove(id) != nil {
                return false
            }
            state.slots[id] = Slot(
                continuation: continuation, deadline: deadline, sentOnGeneration: nil, description: description, timeout: timeout,
                interim: interim)
            state.earliestDeadline = min(state.earliestDeadline ?? deadline, deadline)
            return true
        }
        if !accepted {
            continuation.resume(throwing: BusError(code: .cancelled, message: "call cancelled: \(description)"))
        }
        return accepted
    }

    /// Whether the call still waits (it may have timed out or been cancelled before it was sent).
    func isWaiting(_ id: UInt64) -> Bool {
        state.withLock { $0.slots[id] != nil }
    }

    /// Records that the request goes out on `generation`; `false` if nobody waits for it any more.
    func markSent(_ id: UInt64, generation: UInt64) -> Bool {
        state.withLock { state in
            guard state.slots[id] != nil else { return false }
            state.slots[id]!.sentOnGeneration = generation
            return true
        }
    }

    /// Completes a call with its reply. Returns `false` for unknown ids (late or foreign replies).
    @discardableResult
    func resolve(_ id: UInt64, with delivery: InboundDelivery) -> Bool {
        guard let slot = state.withLock({ $0.slots.removeValue(forKey: id) }) else { return false }
        slot.continuation.resume(returning: delivery)
        return true
    }

    /// Hands a command its interim message and restarts its deadline. Returns `false` when no
    /// command waits under `id` (a late message, or a plain call that expects none).
    @discardableResult
    func deliverInterim(_ id: UInt64, _ delivery: InboundDelivery, now: ContinuousClock.Instant) -> Bool {
        let interim = state.withLock { state -> (@Sendable (InboundDelivery) -> Void)? in
            guard let interim = state.slots[id]?.interim else { return nil }
            // Only later: `earliestDeadline` stays a valid lower bound.
            state.slots[id]!.deadline = now + state.slots[id]!.timeout
            return interim
        }
        interim?(delivery)
        return interim != nil
    }

    func fail(_ id: UInt64, with error: BusError) {
        state.withLock { $0.slots.removeValue(forKey: id) }?.continuation.resume(throwing: error)
    }

    /// Cancellation handler: fails the call now, or leaves a tombstone if it is not registered yet.
    func cancel(_ id: UInt64) {
        let slot = state.withLock { state -> Slot? in
            if let slot = state.slots.removeValue(forKey: id) { return slot }
            state.tombstones.insert(id)
            return nil
        }
        slot?.continuation.resume(throwing: BusError(code: .cancelled, message: "call cancelled: \(slot?.description ?? "")"))
    }

    /// Fails every call that went out on `generation` or earlier: their replies can no longer arrive.
    func failSent(upTo generation: UInt64, error: (Slot) -> BusError) {
        let failed = state.withLock { state -> [Slot] in
            let ids = state.slots.filter { ($0.value.sentOnGeneration ?? .max) <= generation }.map(\.key)
            return ids.compactMap { state.slots.removeValue(forKey: $0) }
        }
        for slot in failed {
            slot.continuation.resume(throwing: error(slot))
        }
    }

    func failAll(_ error: (Slot) -> BusError) {
        let failed = state.withLock { state -> [Slot] in
            defer { state.slots.removeAll() }
            return Array(state.slots.values)
        }
        for slot in failed {
            slot.continuation.resume(throwing: error(slot))
        }
    }

    /// Fails the calls whose deadline has passed with a timeout and returns the earliest
    /// remaining deadline (I/O thread, every turn).
    func expire(now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        let (expired, earliest) = state.withLock { state -> ([Slot], ContinuousClock.Instant?) in
            guard let due = state.earliestDeadline, due <= now else { return ([], state.earliestDeadline) }
            var expired: [Slot] = []
            var earliest: ContinuousClock.Instant?
            for (id, slot) in state.slots {
                if slot.deadline <= now {
                    expired.append(slot)
                    state.slots.removeValue(forKey: id)
                } else if earliest.map({ slot.deadline < $0 }) ?? true {
                    earliest = slot.deadline
                }
            }
            state.earliestDeadline = earliest
            return (expired, earliest)
        }
        for slot in expired {
            slot.continuation.resume(
                throwing: BusError(code: .timeout, message: "Request Timed Out (\(slot.description)). \(slot.timeout.wholeMilliseconds) ms")
            )
        }
        return earliest
    }

    var count: Int { state.withLock { $0.slots.count } }
}

/// Correlation ids on the wire: a per-process prefix and a counter, so that a reply meant for
/// another process (or an earlier run of this one) is recognised and ignored.
struct CorrelationIDCodec: Sendable {
    let prefix: String

    init(prefix: String) {
        self.prefix = prefix
    }

    func encode(_ id: UInt64) -> String {
        "\(prefix).\(id)"
    }

    func decode(_ text: String?) -> UInt64? {
        guard let text, let dot = text.lastIndex(of: "."), text[..<dot] == prefix[...] else { return nil }
        return UInt64(text[text.index(after: dot)...])
    }
}
