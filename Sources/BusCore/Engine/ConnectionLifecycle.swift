/// The connection's life as a pure state machine: events in, actions out. The I/O loop performs
/// the actions; this type only decides, so every transition is tested without a broker.
struct ConnectionLifecycle: Sendable {
    enum State: Equatable, Sendable {
        /// Waiting to try (again); `attempt` counts consecutive failures plus one.
        case disconnected(attempt: Int, nextAttemptAt: ContinuousClock.Instant)
        case connected(generation: UInt64)
        case shuttingDown
    }

    enum Action: Equatable, Sendable {
        case none
        /// Try to connect now.
        case connect(attempt: Int)
        /// Replay topology and deferred work on the new connection, numbered `generation`.
        case established(generation: UInt64, isReconnect: Bool)
        /// Drop the old connection, fail what was in flight on it, and schedule the next attempt.
        case lost(generation: UInt64, retryAt: ContinuousClock.Instant)
        /// Close everything for good.
        case close
    }

    let policy: ReconnectPolicy
    private(set) var state: State
    private var generation: UInt64 = 0

    init(policy: ReconnectPolicy, now: ContinuousClock.Instant) {
        self.policy = policy
        self.state = .disconnected(attempt: 1, nextAttemptAt: now)
    }

    var isConnected: Bool {
        if case .connected = state { return true }
        return false
    }

    var currentGeneration: UInt64 { generation }

    /// Called on every loop turn: is it time to try?
    func tick(now: ContinuousClock.Instant) -> Action {
        if case .disconnected(let attempt, let at) = state, now >= at {
            return .connect(attempt: attempt)
        }
        return .none
    }

    /// The next instant the loop must wake up for, if it is waiting to reconnect.
    var nextAttemptAt: ContinuousClock.Instant? {
        if case .disconnected(_, let at) = state { return at }
        return nil
    }

    mutating func connectSucceeded() -> Action {
        guard case .disconnected = state else { return .none }
        generation += 1
        state = .connected(generation: generation)
        return .established(generation: generation, isReconnect: generation > 1)
    }

    mutating func connectFailed(now: ContinuousClock.Instant, random: Double) -> Action {
        guard case .disconnected(let attempt, _) = state else { return .none }
        let next = attempt + 1
        state = .disconnected(attempt: next, nextAttemptAt: now + policy.delay(beforeAttempt: next, random: random))
        return .none
    }

    mutating func connectionLost(now: ContinuousClock.Instant) -> Action {
        guard case .connected(let lostGeneration) = state else { return .none }
        // The first attempt after a loss is immediate: the broker may only have dropped us.
        state = .disconnected(attempt: 1, nextAttemptAt: now)
        return .lost(generation: lostGeneration, retryAt: now)
    }

    mutating func shutdownRequested() -> Action {
        if state == .shuttingDown { return .none }
        state = .shuttingDown
        return .close
    }
}
