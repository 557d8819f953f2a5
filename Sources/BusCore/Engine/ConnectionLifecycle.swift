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
        /// Try to connect now, to address number `endpoint`.
        case connect(attempt: Int, endpoint: Int)
        /// Replay topology and deferred work on the new connection, numbered `generation`.
        case established(generation: UInt64, isReconnect: Bool)
        /// Drop the old connection, fail what was in flight on it, and schedule the next attempt.
        case lost(generation: UInt64, retryAt: ContinuousClock.Instant)
        /// Close everything for good.
        case close
    }

    let policy: ReconnectPolicy
    /// How many broker addresses there are (the nodes of a cluster).
    let endpointCount: Int
    private(set) var state: State
    private var generation: UInt64 = 0
    /// The address tried next, or in use.
    private(set) var endpoint: Int

    /// `firstEndpoint` is chosen at random by the caller, so that services spread over a
    /// cluster's nodes; this stays pure.
    init(policy: ReconnectPolicy, endpointCount: Int = 1, firstEndpoint: Int = 0, now: ContinuousClock.Instant) {
        self.policy = policy
        self.endpointCount = max(1, endpointCount)
        self.endpoint = min(max(0, firstEndpoint), self.endpointCount - 1)
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
            return .connect(attempt: attempt, endpoint: endpoint)
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
        endpoint = (endpoint + 1) % endpointCount
        // Each address gets its try at once; the backoff counts rounds in which all failed.
        let failures = attempt
        let delay =
            failures % endpointCount == 0 ? policy.delay(beforeAttempt: failures / endpointCount + 1, random: random) : .zero
        state = .disconnected(attempt: attempt + 1, nextAttemptAt: now + delay)
        return .none
    }

    mutating func connectionLost(now: ContinuousClock.Instant) -> Action {
        guard case .connected(let lostGeneration) = state else { return .none }
        // The first attempt after a loss is immediate, to the next address: the node we lost
        // may be going down (a lone broker may only have dropped us: it is its own next).
        endpoint = (endpoint + 1) % endpointCount
        state = .disconnected(attempt: 1, nextAttemptAt: now)
        return .lost(generation: lostGeneration, retryAt: now)
    }

    mutating func shutdownRequested() -> Action {
        if state == .shuttingDown { return .none }
        state = .shuttingDown
        return .close
    }
}
