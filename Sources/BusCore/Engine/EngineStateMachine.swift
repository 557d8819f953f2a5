/// The engine's connection, channel, consumer, confirm and shutdown state as a pure value:
/// events in, actions out. `EngineLoop` performs the actions (the only C calls) and reports
/// their results back as events, so every decision here is tested without a broker.
///
/// The hot path (publishing, acknowledging, delivering) does not pass through here: the loop
/// only reads `currentGeneration`, `replyConsumerTag`, `replyQueue` and `consumerID(forTag:)`.
/// Commands and subscriptions are known by id; their continuations stay with the loop.
struct EngineStateMachine: Sendable {
    /// Channel roles. Consumers live alone on their channels, so that a publish to a missing
    /// exchange (which closes the publishing channel) cannot take the subscriptions down with it.
    ///
    /// Broadcast subscriptions consume on a channel of their own. Their deliveries are
    /// acknowledged a quarter window at a time, so up to a thousand of them wait unacknowledged;
    /// on the work queues' channel they would sit in front of every work delivery in the
    /// broker's list of unacknowledged deliveries, which it walks from the front for each single
    /// ack (`rabbit_channel`): most of the broker's CPU under load went there.
    enum Channel: UInt16, Sendable {
        case consume = 1
        case publish = 2
        case confirm = 3
        case scratch = 4
        case broadcast = 5
    }

    /// How a command behaves when it cannot run now.
    enum CommandKind: Sendable, Equatable {
        /// Publishes: kept while disconnected, and still sent during a graceful shutdown.
        case send
        /// Acks and rejects: meaningless on a later connection, sent during a graceful shutdown.
        case settle
        /// Waits for an answer (calls, administration): kept while disconnected, failed at shutdown.
        case request
        /// Only means something now (a test hook): dropped when it cannot run.
        case transient
    }

    /// An error as plain data, so that actions compare in tests.
    struct Failure: Sendable, Equatable {
        var code: BusError.Code
        var message: String
        var replyCode: Int?

        init(_ code: BusError.Code, _ message: String, replyCode: Int? = nil) {
            self.code = code
            self.message = message
            self.replyCode = replyCode
        }

        init(_ error: BusError) {
            self.init(error.code, error.message, replyCode: error.replyCode)
        }

        var error: BusError { BusError(code: code, message: message, replyCode: replyCode) }

        static let shutdown = Failure(.shutdown, "the bus is shutting down")
        static let cancelled = Failure(.cancelled, "subscription cancelled")
        static let inDoubt = Failure(.connectionLost, "connection lost before the broker confirmed the message")
        static let backpressure = Failure(.backpressure, "too many operations wait for the broker")
    }

    enum Action: Sendable, Equatable {
        /// Open a connection to address number `endpoint`; report `transportOpened` or `connectFailed`.
        case connect(attempt: Int, endpoint: Int)
        case openChannel(Channel)
        case enableConfirms
        case declareExchanges
        /// The connection (and its channels) is ready under `generation`: tell the waiters.
        case reportConnected(generation: UInt64, isReconnect: Bool)
        /// Declare and consume a fresh reply queue; report `replyQueueEstablished`.
        case establishReplyQueue
        /// Declare, bind and consume subscription `id`; report `consumerEstablished` or `consumerRefused`.
        case establishConsumer(id: UInt64)
        /// Tell subscription `id`'s subscriber that it consumes from `queue`.
        case consumerReady(id: UInt64, queue: String)
        /// End subscription `id`: finish its deliveries, fail its subscriber if still waiting.
        case finishConsumer(id: UInt64, Failure)
        case cancelConsumer(tag: String, channel: Channel)
        /// Run the kept commands, in order (through the normal path, which may keep them again).
        case runCommands([UInt64])
        case failCommands([UInt64], Failure)
        case failConfirms(Failure)
        /// Calls whose request went out on `generation` or earlier can no longer be answered.
        case failCallsSentOn(generation: UInt64)
        case failAllCalls(Failure)
        /// Forget the lost channel's delivery tags and this turn's acks.
        case resetAcks
        /// Send this turn's acks now (shutdown).
        case flushAcks
        /// Read until the outstanding confirms are settled, for at most `patience`.
        case awaitConfirms(patience: Duration)
        case closeConnection
        case reportDisconnected(Failure)
    }

    /// What to do with a command that needs a connection when there is none.
    enum Deferral: Sendable, Equatable {
        case kept
        case dropped
        case refused(Failure)
    }

    /// What a run-time binding change needs.
    enum BindingChange: Sendable, Equatable {
        case noSuchSubscription
        /// Not consuming on this connection: the spec holds the change, the reconnect applies it.
        case recorded
        /// Bind and unbind on the broker; if it refuses, report `bindingsRefused(of:restoring:)`.
        case apply(queue: String, bind: [Binding], unbind: [Binding], previous: [Binding])
    }

    private struct Consumer: Sendable {
        /// Variable: run-time binding changes are kept here for the next reconnect.
        var spec: ConsumerSpec
        var consumerTag: String?
        var queueName: String?
    }

    private enum Phase: Equatable {
        case running
        /// Sending what callers handed over before closing.
        case draining
        case closed
    }

    private var lifecycle: ConnectionLifecycle
    private var phase = Phase.running
    private let maxDeferred: Int
    private var consumers: [UInt64: Consumer] = [:]
    private var consumerByTag: [String: UInt64] = [:]
    private(set) var replyQueue: String?
    private(set) var replyConsumerTag: String?
    /// Commands that need a connection, in order, while there is none.
    private var deferred: [(id: UInt64, kind: CommandKind)] = []

    init(
        policy: ReconnectPolicy, endpointCount: Int, firstEndpoint: Int, maxDeferred: Int, now: ContinuousClock.Instant
    ) {
        self.lifecycle = ConnectionLifecycle(policy: policy, endpointCount: endpointCount, firstEndpoint: firstEndpoint, now: now)
        self.maxDeferred = maxDeferred
    }

    // MARK: Queries (consumerID(forTag:) is on the delivery path; some others only tests read)

    var currentGeneration: UInt64 { lifecycle.currentGeneration }
    var isConnected: Bool { lifecycle.isConnected }
    var nextAttemptAt: ContinuousClock.Instant? { phase == .running ? lifecycle.nextAttemptAt : nil }
    var deferredCount: Int { deferred.count }
    var subscriptionIDs: [UInt64] { consumers.keys.sorted() }

    @inline(__always)
    func consumerID(forTag tag: String) -> UInt64? { consumerByTag[tag] }

    func spec(of id: UInt64) -> ConsumerSpec? { consumers[id]?.spec }

    func consumerTag(of id: UInt64) -> String? { consumers[id]?.consumerTag }

    // MARK: Connecting

    /// Every loop turn: is it time to try to connect?
    func tick(now: ContinuousClock.Instant) -> Action? {
        guard phase == .running, case .connect(let attempt, let endpoint) = lifecycle.tick(now: now) else { return nil }
        return .connect(attempt: attempt, endpoint: endpoint)
    }

    /// The socket is open and logged in: set up the channels and the convention exchanges. If any
    /// of these fails, report `connectFailed`.
    func transportOpened() -> [Action] {
        [
            .openChannel(.consume), .openChannel(.broadcast), .openChannel(.publish), .openChannel(.confirm), .enableConfirms,
            .openChannel(.scratch), .declareExchanges,
        ]
    }

    mutating func connectFailed(now: ContinuousClock.Instant, random: Double) {
        _ = lifecycle.connectFailed(now: now, random: random)
    }

    /// The channels and exchanges are up: announce it, then restore the reply queue and every
    /// subscription on the new generation, then run what waited for a connection.
    mutating func connectSucceeded() -> [Action] {
        guard phase == .running, case .established(let generation, let isReconnect) = lifecycle.connectSucceeded() else { return [] }
        var actions: [Action] = [.reportConnected(generation: generation, isReconnect: isReconnect), .establishReplyQueue]
        for id in consumers.keys.sorted() {
            actions.append(.establishConsumer(id: id))
        }
        if !deferred.isEmpty {
            actions.append(.runCommands(deferred.map(\.id)))
            deferred.removeAll()
        }
        return actions
    }

    mutating func replyQueueEstablished(queue: String, consumerTag: String) {
        replyQueue = queue
        replyConsumerTag = consumerTag
    }

    /// The connection is gone (a failed call, a close from the broker, a missed heartbeat).
    /// Everything tied to it is dropped and the next attempt, to the next address, is immediate.
    mutating func connectionLost(_ failure: Failure, now: ContinuousClock.Instant) -> [Action] {
        guard case .lost(let generation, _) = lifecycle.connectionLost(now: now) else { return [] }
        replyQueue = nil
        replyConsumerTag = nil
        consumerByTag.removeAll()
        for id in consumers.keys { consumers[id]?.consumerTag = nil }
        return [
            .closeConnection, .resetAcks, .reportDisconnected(failure), .failCallsSentOn(generation: generation),
            .failConfirms(.inDoubt),
        ]
    }

    /// The broker closed one channel. Only a consuming channel takes the connection with it,
    /// since they carry every subscription: rebuilding all of it cleanly is simplest.
    mutating func channelClosed(_ channel: UInt16, code: Int, text: String, now: ContinuousClock.Instant) -> [Action] {
        guard isConnected else { return [] }
        switch Channel(rawValue: channel) {
        case .publish: return [.openChannel(.publish)]
        case .scratch: return [.openChannel(.scratch)]
        case .confirm: return [.failConfirms(Failure(.channelClosed, text, replyCode: code)), .openChannel(.confirm), .enableConfirms]
        case .consume, .broadcast, nil: return connectionLost(Failure(.channelClosed, text, replyCode: code), now: now)
        }
    }

    // MARK: Subscriptions

    /// A new subscription; it is established now if there is a connection, else after the next connect.
    mutating func subscribe(id: UInt64, spec: ConsumerSpec) -> Action? {
        consumers[id] = Consumer(spec: spec)
        return isConnected ? .establishConsumer(id: id) : nil
    }

    /// Subscription `id` consumes from `queue` as `consumerTag` on `channel` (its spec's).
    mutating func consumerEstablished(id: UInt64, consumerTag: String, queue: String, channel: Channel) -> [Action] {
        guard consumers[id] != nil else { return [.cancelConsumer(tag: consumerTag, channel: channel)] }
        consumers[id]?.consumerTag = consumerTag
        consumers[id]?.queueName = queue
        consumerByTag[consumerTag] = id
        return [.consumerReady(id: id, queue: queue)]
    }

    /// The broker refused the consumer (406 mismatched queue flags, 405 locked, 404 missing
    /// exchange): the subscriber hears it instead of a retry that cannot succeed.
    mutating func consumerRefused(id: UInt64, _ failure: Failure) -> [Action] {
        guard consumers.removeValue(forKey: id) != nil else { return [.openChannel(.scratch)] }
        return [.openChannel(.scratch), .finishConsumer(id: id, failure)]
    }

    /// `basic.consume` (or its `basic.qos`) was refused, which closes the consumers' channel: as
    /// for any loss of that channel, the connection is rebuilt. A queue missing at that moment
    /// (404: an auto-delete queue whose last consumers, say a killed process's, left between
    /// this declare and the consume) is declared again then; any other refusal ends the
    /// subscription.
    mutating func consumeRefused(id: UInt64, _ failure: Failure, now: ContinuousClock.Instant) -> [Action] {
        var ended: [Action] = []
        if failure.replyCode != 404, consumers.removeValue(forKey: id) != nil {
            ended.append(.finishConsumer(id: id, failure))
        }
        return ended + connectionLost(failure, now: now)
    }

    mutating func unsubscribe(id: UInt64) -> [Action] {
        guard let consumer = consumers.removeValue(forKey: id) else { return [] }
        var actions: [Action] = [.finishConsumer(id: id, .cancelled)]
        if let tag = consumer.consumerTag {
            consumerByTag[tag] = nil
            if isConnected { actions.append(.cancelConsumer(tag: tag, channel: consumer.spec.channel)) }
        }
        return actions
    }

    /// The broker cancelled a consumer (its queue was deleted): establish it again.
    mutating func consumerCancelledByBroker(tag: String) -> Action? {
        if let id = consumerByTag.removeValue(forKey: tag) {
            consumers[id]?.consumerTag = nil
            return .establishConsumer(id: id)
        }
        return tag == replyConsumerTag ? .establishReplyQueue : nil
    }

    /// Bindings are counted: the broker is asked to bind only for the first holder of a binding
    /// and to unbind only when its last holder removes it, so overlapping holders (two tasks for
    /// one node) need no ordering between themselves.
    mutating func changeBindings(of id: UInt64, add: [Binding], remove: [Binding]) -> BindingChange {
        guard var consumer = consumers[id] else { return .noSuchSubscription }
        let previous = consumer.spec.bindings
        var toBind: [Binding] = []
        for binding in add {
            if !consumer.spec.bindings.contains(binding) { toBind.append(binding) }
            consumer.spec.bindings.append(binding)
        }
        var toUnbind: [Binding] = []
        for binding in remove {
            guard let index = consumer.spec.bindings.firstIndex(of: binding) else { continue }
            consumer.spec.bindings.remove(at: index)
            if !consumer.spec.bindings.contains(binding) { toUnbind.append(binding) }
        }
        consumers[id] = consumer
        guard isConnected, consumer.consumerTag != nil, let queue = consumer.queueName else { return .recorded }
        return .apply(queue: queue, bind: toBind, unbind: toUnbind, previous: previous)
    }

    /// A refused change (say, a missing exchange) is not remembered, or every reconnect would
    /// fail the whole consumer.
    mutating func bindingsRefused(of id: UInt64, restoring previous: [Binding]) -> [Action] {
        consumers[id]?.spec.bindings = previous
        return [.openChannel(.scratch)]
    }

    // MARK: Commands

    /// A command that needs a connection arrived (or failed to send) while there is none.
    mutating func deferCommand(id: UInt64, kind: CommandKind) -> Deferral {
        switch kind {
        case .settle, .transient:
            // Acks of a previous connection are meaningless: its deliveries come back redelivered.
            return .dropped
        case .send, .request:
            guard deferred.count < maxDeferred else { return .refused(.backpressure) }
            deferred.append((id, kind))
            return .kept
        }
    }

    // MARK: Shutdown

    /// Graceful shutdown, first half: send what callers already handed over (publishes, acks,
    /// including `incoming`, the commands drained with the stop) and wait a little for
    /// outstanding confirms. Requests that need a reply are kept to be failed by `drained()`.
    mutating func shutdownRequested(incoming: [(id: UInt64, kind: CommandKind)]) -> [Action] {
        guard phase == .running else { return [] }
        phase = .draining
        let all = deferred + incoming
        deferred.removeAll()
        guard isConnected else {
            deferred = all
            return []
        }
        var send: [UInt64] = []
        for command in all {
            switch command.kind {
            case .send, .settle: send.append(command.id)
            case .request, .transient: deferred.append(command)
            }
        }
        return [.runCommands(send), .flushAcks, .awaitConfirms(patience: .seconds(2))]
    }

    /// Graceful shutdown, second half: fail everything still waiting and close, once.
    mutating func drained() -> [Action] {
        guard phase == .draining else { return [] }
        phase = .closed
        let wasConnected = isConnected
        _ = lifecycle.shutdownRequested()
        var actions: [Action] = []
        if !deferred.isEmpty {
            actions.append(.failCommands(deferred.map(\.id), .shutdown))
            deferred.removeAll()
        }
        actions.append(.failConfirms(.shutdown))
        for id in consumers.keys.sorted() {
            actions.append(.finishConsumer(id: id, .shutdown))
        }
        if wasConnected {
            for (tag, id) in consumerByTag.sorted(by: { $0.key < $1.key }) {
                actions.append(.cancelConsumer(tag: tag, channel: consumers[id]?.spec.channel ?? .consume))
            }
        }
        consumers.removeAll()
        consumerByTag.removeAll()
        replyQueue = nil
        replyConsumerTag = nil
        actions += [.closeConnection, .reportDisconnected(.shutdown), .failAllCalls(.shutdown)]
        return actions
    }
}
