import Glibc
import Logging

/// The I/O loop. It is created on the engine's own thread and never leaves it, which is how the
/// rabbitmq-c connection stays confined to one thread: this type is not `Sendable`, and only
/// `Sendable` things (the inbox, the pending-call map, stream continuations) connect it to tasks.
///
/// Each turn: run queued commands, read what the broker sent, service heartbeats, then sleep in
/// `poll()` on the socket and the inbox's eventfd until either has something.
///
/// Connection, channel, subscription and shutdown decisions belong to `EngineStateMachine`;
/// this type performs its actions (the C calls) and reports their outcomes back to it. It keeps
/// what cannot be plain data: the connection, continuations, and the deliveries' sinks.
final class EngineLoop {
    typealias Channel = EngineStateMachine.Channel
    typealias Action = EngineStateMachine.Action
    typealias Failure = EngineStateMachine.Failure

    /// A subscription's task-facing side. A class, so that routing a delivery to it costs one
    /// retain rather than a copy.
    final class Subscriber {
        let sink: DeliveryQueue
        /// Whether the broker counts its deliveries against a prefetch (they need acks).
        let manualAck: Bool
        var ready: CheckedContinuation<String, any Error>?

        init(sink: DeliveryQueue, manualAck: Bool, ready: CheckedContinuation<String, any Error>?) {
            self.sink = sink
            self.manualAck = manualAck
            self.ready = ready
        }
    }

    let shared: EngineShared
    var configuration: BusConfiguration { shared.configuration }
    var logger: Logger
    var machine: EngineStateMachine
    var connection: AMQPConnection?
    /// The address of the connection being opened or in use.
    var endpoint: BusConfiguration.Endpoint?
    var subscribers: [UInt64: Subscriber] = [:]
    /// Commands the state machine keeps until there is a connection (or fails at shutdown), by id.
    var parked: [UInt64: EngineCommand] = [:]
    var nextParkedID: UInt64 = 0
    var confirms = ConfirmTracker<ConfirmWaiter>()
    /// Acks of this turn, sent together (coalesced) once the turn's commands have run.
    var acks = ChannelAcks()
    /// Subscriptions whose consumer waits for deliveries read since the last wake-up.
    var sleepingSinks: [DeliveryQueue] = []
    /// Deliveries handed to sleeping consumers since the first of them, for the batching bound.
    var unwokenDeliveries = 0
    var firstUnwokenAt = ContinuousClock.now
    /// Whether the socket may have bytes to read: `poll()` said so, or nobody asked it yet.
    /// Reading only then saves a `recv()` that would fail with EAGAIN on every turn.
    var socketMayBeReadable = true
    var lastSend = ContinuousClock.now
    var lastReceive = ContinuousClock.now
    var heartbeat: Duration = .zero
    var random = SystemRandomNumberGenerator()

    init(shared: EngineShared) {
        self.shared = shared
        self.logger = shared.logger
        let endpoints = shared.configuration.endpoints.count
        self.machine = EngineStateMachine(
            policy: shared.configuration.reconnect, endpointCount: endpoints,
            firstEndpoint: Int.random(in: 0..<max(1, endpoints)),
            maxDeferred: shared.configuration.maxBufferedOperations, now: .now)
    }

    func run() {
        logger.debug("bus I/O thread started", metadata: ["amqp.url": "\(configuration.redactedURL)"])
        while true {
            let (commands, stopping) = shared.inbox.drain()
            if stopping {
                shutDown(incoming: commands)
                return
            }
            // One clock read per turn: at tens of thousands of turns a second, each read shows.
            let now = ContinuousClock.now
            if let action = machine.tick(now: now) {
                perform(action)
            }
            for command in commands {
                execute(command)
            }
            flushAcksAndOutput()
            if connection != nil {
                pumpInbound()
                serviceHeartbeats(now: now)
            }
            // Calls time out here, on this thread, not on a timer task that a busy
            // cooperative pool could hold up.
            let nextCallDeadline = shared.pending.expire(now: now)
            waitForWork(until: nextCallDeadline)
        }
    }

    /// For an engine that never started: fail what was queued, without connecting.
    func runShutdownOnly() {
        shutDown(incoming: shared.inbox.drain().commands)
    }

    // MARK: Performing the state machine's actions

    func perform(_ actions: [Action]) {
        for action in actions {
            perform(action)
        }
    }

    /// Actions that need the connection do nothing once it is gone: an earlier action of the
    /// same list may have lost it, and the state machine has already planned for that.
    func perform(_ action: Action) {
        switch action {
        case .connect(let attempt, let endpoint):
            connect(attempt: attempt, to: configuration.endpoints[endpoint])
        case .openChannel, .enableConfirms, .declareExchanges:
            guard let connection else { return }
            do {
                try setUp(action, on: connection)
            } catch {
                lose(error)
            }
        case .reportConnected(let generation, let isReconnect):
            reportConnected(generation: generation, isReconnect: isReconnect)
        case .establishReplyQueue:
            establishReplyQueue()
        case .establishConsumer(let id):
            establish(consumerID: id)
        case .consumerReady(let id, let queue):
            subscribers[id]?.ready?.resume(returning: queue)
            subscribers[id]?.ready = nil
        case .finishConsumer(let id, let failure):
            guard let subscriber = subscribers.removeValue(forKey: id) else { return }
            subscriber.sink.finish()
            subscriber.ready?.resume(throwing: failure.error)
        case .cancelConsumer(let tag, let channel):
            guard let connection else { return }
            do {
                try connection.cancel(channel: channel.rawValue, consumerTag: tag)
            } catch {
                lose(error)
            }
        case .runCommands(let ids):
            for id in ids {
                if let command = parked.removeValue(forKey: id) { execute(command) }
            }
        case .failCommands(let ids, let failure):
            let error = failure.error
            for id in ids {
                if let command = parked.removeValue(forKey: id) { fail(command, with: error) }
            }
        case .failConfirms(let failure):
            let error = failure.error
            for waiter in confirms.reset() { settle(waiter, .failure(error)) }
        case .failCallsSentOn(let generation):
            shared.pending.failSent(upTo: generation) { slot in
                BusError(
                    code: .connectionLost, message: "connection lost while waiting for \(slot.description)")
            }
        case .failAllCalls(let failure):
            let error = failure.error
            shared.pending.failAll { _ in error }
        case .resetAcks:
            acks.reset()
        case .flushAcks:
            flushAcksAndOutput()
        case .awaitConfirms(let patience):
            awaitConfirms(patience: patience)
        case .closeConnection:
            connection?.close()
            connection = nil
        case .reportDisconnected(let failure):
            shared.setDisconnected()
            if failure.code != .shutdown {
                logger.warning(
                    "lost the broker connection; reconnecting", metadata: ["error": "\(failure.message)"])
            }
        }
    }

    /// Reports a lost connection to the state machine and performs what it decides.
    func lose(_ error: any Error) {
        let failure = (error as? BusError).map(Failure.init) ?? Failure(.connectionLost, "\(error)")
        perform(machine.connectionLost(failure, now: .now))
    }

    /// Our own short consumer tags (the broker's are 31 characters) keep the per-delivery lookup cheap.
    static let replyConsumerTag = "r"

    static func randomSuffix(using generator: inout SystemRandomNumberGenerator) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String(
            (0..<7).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
    }
}
