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
    var confirms = ConfirmTracker<CheckedContinuation<Void, any Error>>()
    /// Acks of this turn, sent together (coalesced) once the turn's commands have run.
    var acks = AckCoalescer()
    var pendingAcks: [UInt64] = []
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
            flushAcks()
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
        case .cancelConsumer(let tag):
            guard let connection else { return }
            do {
                try connection.cancel(channel: Channel.consume.rawValue, consumerTag: tag)
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
            for continuation in confirms.reset() { continuation.resume(throwing: error) }
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
            pendingAcks.removeAll()
        case .flushAcks:
            flushAcks()
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

// MARK: Connecting and topology

extension EngineLoop {
    func connect(attempt: Int, to endpoint: BusConfiguration.Endpoint) {
        self.endpoint = endpoint
        do {
            let connection = try AMQPConnection(configuration: configuration, endpoint: endpoint)
            self.connection = connection
            for step in machine.transportOpened() {
                try setUp(step, on: connection)
            }
            heartbeat = .seconds(connection.negotiatedHeartbeat)
            lastSend = .now
            lastReceive = .now
        } catch {
            connection?.close()
            connection = nil
            machine.connectFailed(now: .now, random: Double.random(in: 0..<1, using: &random))
            let level: Logger.Level = attempt == 1 || attempt % 10 == 0 ? .warning : .debug
            logger.log(
                level: level, "cannot reach the broker, will retry",
                metadata: [
                    "amqp.url": "\(configuration.redactedURL(of: endpoint))", "bus.attempt": "\(attempt)",
                    "error": "\((error as? BusError)?.message ?? "\(error)")",
                ])
            return
        }
        perform(machine.connectSucceeded())
    }

    /// The steps that prepare a new connection's channels; they throw, so that a failure
    /// during connecting counts as a failed attempt.
    func setUp(_ step: Action, on connection: AMQPConnection) throws {
        switch step {
        case .openChannel(let channel):
            try connection.openChannel(channel.rawValue)
        case .enableConfirms:
            try connection.enableConfirms(channel: Channel.confirm.rawValue)
        case .declareExchanges:
            try declareConventionExchanges(on: connection)
        default:
            perform(step)
        }
    }

    func reportConnected(generation: UInt64, isReconnect: Bool) {
        guard let endpoint else { return }
        shared.setConnected(generation: generation, to: endpoint)
        let url = configuration.redactedURL(of: endpoint)
        if isReconnect {
            shared.metrics.reconnects.increment()
            logger.notice(
                "reconnected to the broker",
                metadata: ["amqp.url": "\(url)", "bus.generation": "\(generation)"])
        } else {
            logger.info("connected to the broker", metadata: ["amqp.url": "\(url)"])
        }
    }

    /// RackHD's exact flags: topic, durable, not auto-delete. Declaring is idempotent; a
    /// mismatch (406) means someone declared the name differently, which we report and survive.
    func declareConventionExchanges(on connection: AMQPConnection) throws {
        for exchange in Exchange.conventions {
            let name = configuration.name(of: exchange)
            do {
                try connection.declareExchange(
                    channel: Channel.scratch.rawValue, name: name, type: Exchange.kind, passive: false,
                    durable: Exchange.durable,
                    autoDelete: Exchange.autoDelete)
            } catch let error as BusError where error.code == .channelClosed {
                logger.error(
                    "exchange exists with different flags",
                    metadata: ["amqp.exchange": "\(name)", "error": "\(error.message)"])
                try connection.openChannel(Channel.scratch.rawValue)
            }
        }
    }

    func establishReplyQueue() {
        guard let connection else { return }
        do {
            let name =
                "rackbus.reply.\(configuration.connectionName).\(Self.randomSuffix(using: &random))"
            let declared = try connection.declareQueue(
                channel: Channel.scratch.rawValue, name: name, passive: false, durable: false,
                exclusive: true, autoDelete: true,
                arguments: [:])
            let tag = try connection.consume(
                channel: Channel.consume.rawValue, queue: declared.name, consumerTag: Self.replyConsumerTag,
                noAck: true,
                exclusive: true)
            machine.replyQueueEstablished(queue: declared.name, consumerTag: tag)
        } catch {
            // Without a reply queue no call can be answered: start over on a new connection.
            lose(error)
        }
    }

    func establish(consumerID id: UInt64) {
        guard let connection, let spec = machine.spec(of: id) else { return }
        do {
            let queueName: String
            switch spec.queue {
            case .exclusive(let base):
                queueName = try connection.declareQueue(
                    channel: Channel.scratch.rawValue, name: "\(base):\(Self.randomSuffix(using: &random))",
                    passive: false,
                    durable: false, exclusive: true, autoDelete: true, arguments: [:]
                ).name
            case .shared(let name, let durable, let autoDelete, let arguments):
                queueName = try connection.declareQueue(
                    channel: Channel.scratch.rawValue, name: name, passive: false, durable: durable,
                    exclusive: false,
                    autoDelete: autoDelete, arguments: arguments
                ).name
            }
            try bind(queueName, spec.distinctBindings, on: connection)
            if let prefetch = spec.prefetch {
                try connection.setPrefetch(channel: Channel.consume.rawValue, count: prefetch)
            }
            let tag = try connection.consume(
                channel: Channel.consume.rawValue, queue: queueName, consumerTag: "c\(id)",
                noAck: spec.prefetch == nil,
                exclusive: false)
            perform(machine.consumerEstablished(id: id, consumerTag: tag, queue: queueName))
        } catch let error as BusError where error.code == .channelClosed {
            logger.error("subscription refused by the broker", metadata: ["error": "\(error.message)"])
            perform(machine.consumerRefused(id: id, Failure(error)))
        } catch {
            // The connection is gone; establishment is retried after the reconnect.
            lose(error)
        }
    }

    /// Binds `queue` with each of `bindings` (on the scratch channel, where a refusal cannot
    /// take the consumers down).
    func bind(_ queue: String, _ bindings: [Binding], on connection: AMQPConnection) throws {
        for binding in bindings {
            try connection.bindQueue(
                channel: Channel.scratch.rawValue, queue: queue, exchange: binding.exchange,
                routingKey: binding.pattern)
        }
    }
}

// MARK: Commands

extension EngineLoop {
    func execute(_ command: EngineCommand) {
        // Acks of a previous connection are meaningless: its deliveries come back redelivered.
        if case .ack(let token) = command,
            token.generation != machine.currentGeneration || connection == nil
        {
            return
        }
        if case .reject(let token, _) = command,
            token.generation != machine.currentGeneration || connection == nil
        {
            return
        }
        switch command {
        case .unsubscribe(let id):
            perform(machine.unsubscribe(id: id))
            return
        case .changeBindings(let id, let add, let remove, let continuation):
            changeBindings(of: id, add: add, remove: remove, continuation)
            return
        case .subscribe(let id, let spec, let sink, let ready):
            subscribers[id] = Subscriber(sink: sink, manualAck: spec.prefetch != nil, ready: ready)
            if let action = machine.subscribe(id: id, spec: spec) { perform(action) }
            return
        default:
            break
        }
        guard let connection else {
            keepForLater(command)
            return
        }
        do {
            switch command {
            case .publish(let message), .reply(let message, _):
                try connection.publish(
                    channel: Channel.publish.rawValue, exchange: message.exchange,
                    routingKey: message.routingKey,
                    mandatory: message.mandatory, properties: message.properties, body: message.body)
                lastSend = .now
                if case .reply(_, let token) = command, token.generation == machine.currentGeneration {
                    pendingAcks.append(token.deliveryTag)
                }
            case .publishConfirmed(let message, let continuation):
                confirms.add(continuation, messageID: message.properties.messageID)
                try connection.publish(
                    channel: Channel.confirm.rawValue, exchange: message.exchange,
                    routingKey: message.routingKey,
                    mandatory: message.mandatory, properties: message.properties, body: message.body)
                lastSend = .now
            case .call(var message, let id):
                // A call that timed out or was cancelled while it waited is not sent at all.
                guard shared.pending.markSent(id, generation: machine.currentGeneration) else { return }
                message.properties.replyTo = machine.replyQueue
                try connection.publish(
                    channel: Channel.publish.rawValue, exchange: message.exchange,
                    routingKey: message.routingKey,
                    mandatory: false, properties: message.properties, body: message.body)
                lastSend = .now
            case .ack(let token):
                pendingAcks.append(token.deliveryTag)
            case .ackAll(let tokens):
                for token in tokens where token.generation == machine.currentGeneration {
                    pendingAcks.append(token.deliveryTag)
                }
            case .reject(let token, let requeue):
                try connection.reject(
                    channel: Channel.consume.rawValue, deliveryTag: token.deliveryTag, requeue: requeue)
                acks.settledIndividually(token.deliveryTag)
                lastSend = .now
            case .checkExchange(let name, let continuation):
                try answer(continuation, notFound: false) {
                    try connection.declareExchange(
                        channel: Channel.scratch.rawValue, name: name, type: Exchange.kind, passive: true,
                        durable: false,
                        autoDelete: false)
                    return true
                }
            case .deleteQueue(let name, let continuation):
                try answer(continuation) {
                    try connection.deleteQueue(channel: Channel.scratch.rawValue, name: name)
                }
            case .declareWorkQueue(let name, let bindings, let arguments, let continuation):
                try answer(continuation) {
                    _ = try connection.declareQueue(
                        channel: Channel.scratch.rawValue, name: name, passive: false, durable: true,
                        exclusive: false,
                        autoDelete: false, arguments: arguments)
                    try bind(name, bindings, on: connection)
                }
            case .inspectQueue(let name, let continuation):
                try answer(continuation) {
                    let declared = try connection.declareQueue(
                        channel: Channel.scratch.rawValue, name: name, passive: true, durable: false,
                        exclusive: false,
                        autoDelete: false, arguments: [:])
                    return QueueStatus(
                        name: declared.name, messages: Int(declared.messages),
                        consumers: Int(declared.consumers))
                }
            case .simulateConnectionLoss:
                lose(BusError(code: .connectionLost, message: "connection dropped on request"))
            case .subscribe, .unsubscribe, .changeBindings:
                break
            }
        } catch {
            // A failed write means the socket is gone. Keep the command for the next connection
            // when it is safe to repeat; confirmed publishes are failed by the loss's actions.
            if case .publish = command { keepForLater(command) }
            lose(error)
        }
    }

    /// Applies a run-time binding change the state machine has planned.
    func changeBindings(
        of id: UInt64, add: [Binding], remove: [Binding],
        _ continuation: CheckedContinuation<Void, any Error>
    ) {
        switch machine.changeBindings(of: id, add: add, remove: remove) {
        case .noSuchSubscription:
            continuation.resume(
                throwing: BusError(code: .cancelled, message: "the subscription has ended"))
        case .recorded:
            continuation.resume()
        case .apply(let queue, let bind, let unbind, let previous):
            guard let connection else {
                continuation.resume()
                return
            }
            do {
                for binding in bind {
                    try connection.bindQueue(
                        channel: Channel.scratch.rawValue, queue: queue, exchange: binding.exchange,
                        routingKey: binding.pattern)
                }
                for binding in unbind {
                    try connection.unbindQueue(
                        channel: Channel.scratch.rawValue, queue: queue, exchange: binding.exchange,
                        routingKey: binding.pattern)
                }
                continuation.resume()
            } catch let error as BusError where error.code == .channelClosed {
                // Bindings made earlier in this change last until the next reconnect.
                continuation.resume(throwing: error)
                perform(machine.bindingsRefused(of: id, restoring: previous))
            } catch {
                // The connection is gone; the spec holds the change and the reconnect applies it.
                continuation.resume()
                lose(error)
            }
        }
    }

    /// Runs an administrative command on the scratch channel and answers its caller before
    /// anything else can fail. A broker refusal closes only that channel: it is reopened, and a
    /// 404 becomes `notFound` when the command has such an answer. Any other error means the
    /// connection is gone: the caller hears it, and it is rethrown so the loop reconnects.
    func answer<T: Sendable>(
        _ continuation: CheckedContinuation<T, any Error>, notFound: T? = nil, _ body: () throws -> T
    ) throws {
        let result: T
        do {
            result = try body()
        } catch let error as BusError where error.code == .channelClosed {
            if let notFound, error.replyCode == 404 {
                continuation.resume(returning: notFound)
            } else {
                continuation.resume(throwing: error)
            }
            try connection?.openChannel(Channel.scratch.rawValue)
            return
        } catch {
            continuation.resume(throwing: error)
            throw error
        }
        continuation.resume(returning: result)
    }

    /// Answers a command that will never run, whatever it waits on.
    func fail(_ command: EngineCommand, with error: BusError) {
        switch command {
        case .publishConfirmed(_, let continuation): continuation.resume(throwing: error)
        case .call(_, let id): shared.pending.fail(id, with: error)
        case .checkExchange(_, let continuation): continuation.resume(throwing: error)
        case .deleteQueue(_, let continuation): continuation.resume(throwing: error)
        case .inspectQueue(_, let continuation): continuation.resume(throwing: error)
        case .declareWorkQueue(_, _, _, let continuation): continuation.resume(throwing: error)
        case .changeBindings(_, _, _, let continuation): continuation.resume(throwing: error)
        case .subscribe(_, _, let sink, let ready):
            sink.finish()
            ready.resume(throwing: error)
        case .publish, .reply, .unsubscribe, .ack, .ackAll, .reject, .simulateConnectionLoss:
            break
        }
    }

    /// Hands a command that needs a connection to the state machine, which keeps it, drops it
    /// or refuses it (too many wait already).
    func keepForLater(_ command: EngineCommand) {
        let id = park(command)
        switch machine.deferCommand(id: id, kind: command.kind) {
        case .kept:
            break
        case .dropped:
            parked[id] = nil
        case .refused(let failure):
            parked[id] = nil
            shared.metrics.droppedPublishes.increment()
            fail(command, with: failure.error)
        }
    }

    func park(_ command: EngineCommand) -> UInt64 {
        nextParkedID += 1
        parked[nextParkedID] = command
        return nextParkedID
    }
}

extension EngineCommand {
    /// How the state machine treats this command when it cannot run now.
    var kind: EngineStateMachine.CommandKind {
        switch self {
        case .publish, .reply, .publishConfirmed: .send
        case .ack, .ackAll, .reject: .settle
        case .simulateConnectionLoss: .transient
        case .call, .subscribe, .unsubscribe, .changeBindings, .checkExchange, .deleteQueue,
            .inspectQueue, .declareWorkQueue:
            .request
        }
    }
}

// MARK: Inbound

extension EngineLoop {
    /// Reads up to a bounded number of events, so that queued commands are never starved.
    func pumpInbound() {
        var budget = 512
        // TLS: drain until rabbitmq-c reports nothing more, since OpenSSL may buffer records.
        var mayRead = socketMayBeReadable || connection?.usesTLS == true
        defer {
            if budget < 512 { lastReceive = .now }
        }
        while budget > 0, let connection {
            guard mayRead || connection.hasBufferedInput else { return }
            mayRead = connection.usesTLS
            budget -= 1
            let event: InboundEvent?
            do {
                event = try connection.nextEvent()
            } catch {
                lose(error)
                return
            }
            guard let event else { return }
            handle(event)
        }
    }

    func handle(_ event: InboundEvent) {
        switch event {
        case .delivery(let delivery):
            if delivery.consumerTag == machine.replyConsumerTag {
                deliverReply(delivery)
            } else if let id = machine.consumerID(forTag: delivery.consumerTag),
                let subscriber = subscribers[id]
            {
                if subscriber.manualAck {
                    acks.delivered(delivery.deliveryTag)
                }
                let sink = subscriber.sink
                if sink.append(ConsumedDelivery(delivery: delivery, generation: machine.currentGeneration)) {
                    if unwokenDeliveries == 0 { firstUnwokenAt = .now }
                    unwokenDeliveries += 1
                    if !sleepingSinks.contains(where: { $0 === sink }) { sleepingSinks.append(sink) }
                }
            }
        case .publishAck(let channel, let tag, let multiple) where channel == Channel.confirm.rawValue:
            for (continuation, outcome) in confirms.ack(tag, multiple: multiple) {
                switch outcome {
                case .confirmed, .nacked: continuation.resume()
                case .unroutable:
                    continuation.resume(
                        throwing: BusError(code: .unroutable, message: "no queue is bound for this message"))
                }
            }
        case .publishNack(let channel, let tag, let multiple) where channel == Channel.confirm.rawValue:
            for (continuation, _) in confirms.nack(tag, multiple: multiple) {
                continuation.resume(
                    throwing: BusError(code: .publishNacked, message: "the broker refused the message"))
            }
        case .returned(_, let code, let text, let exchange, let routingKey, let properties):
            confirms.markReturned(messageID: properties.messageID)
            logger.debug(
                "message returned",
                metadata: [
                    "amqp.exchange": "\(exchange)", "amqp.routing_key": "\(routingKey)",
                    "amqp.reply_code": "\(code)",
                    "amqp.reply_text": "\(text)",
                ])
        case .consumerCancelled(_, let tag):
            // The broker cancelled a consumer (its queue was deleted).
            guard let action = machine.consumerCancelledByBroker(tag: tag) else { return }
            if case .establishConsumer = action {
                logger.warning(
                    "the broker cancelled a subscription; re-establishing it",
                    metadata: ["amqp.consumer_tag": "\(tag)"])
            }
            perform(action)
        case .channelClosed(let channel, let code, let text):
            guard connection != nil else { return }
            logger.error(
                "the broker closed a channel",
                metadata: [
                    "amqp.channel": "\(channel)", "amqp.reply_code": "\(code)", "amqp.reply_text": "\(text)",
                ])
            perform(machine.channelClosed(channel, code: code, text: text, now: .now))
        case .connectionClosed(let code, let text):
            lose(
                BusError(
                    code: .connectionLost, message: "the broker closed the connection: \(text)",
                    replyCode: code))
        case .blocked(let reason):
            logger.warning("the broker blocks publishing", metadata: ["reason": "\(reason)"])
        case .unblocked:
            logger.notice("the broker accepts publishing again")
        case .publishAck, .publishNack, .ignored:
            break
        }
    }

    func deliverReply(_ delivery: InboundDelivery) {
        let id = shared.correlation.decode(delivery.properties.correlationID)
        if let id, CommandWire.isInterim(delivery.properties.type) {
            if !shared.pending.deliverInterim(id, delivery, now: .now) {
                shared.metrics.lateReplies.increment()
            }
            return
        }
        guard let id, shared.pending.resolve(id, with: delivery) else {
            shared.metrics.lateReplies.increment()
            logger.debug(
                "dropped a reply nobody waits for",
                metadata: ["amqp.correlation_id": "\(delivery.properties.correlationID ?? "-")"])
            return
        }
    }

    /// Sends this turn's acks, one `multiple` ack covering every contiguous one where possible.
    func flushAcks() {
        guard !pendingAcks.isEmpty else { return }
        defer { pendingAcks.removeAll(keepingCapacity: true) }
        guard let connection else { return }
        do {
            for frame in acks.acknowledge(pendingAcks) {
                try connection.ack(
                    channel: Channel.consume.rawValue, deliveryTag: frame.tag, multiple: frame.multiple)
            }
            lastSend = .now
        } catch {
            lose(error)
        }
    }
}

// MARK: Heartbeats and waiting

extension EngineLoop {
    func serviceHeartbeats(now: ContinuousClock.Instant) {
        guard let connection, heartbeat > .zero else { return }
        if now - lastReceive > heartbeat * 2 {
            lose(
                BusError(
                    code: .connectionLost, message: "no heartbeat from the broker for \(heartbeat * 2)"))
            return
        }
        if now - lastSend >= heartbeat / 2 {
            do {
                try connection.sendHeartbeat()
                lastSend = now
            } catch {
                lose(error)
            }
        }
    }

    /// Wakes the consumers waiting for what was read. Under load, a wake-up per read pass
    /// costs more than the deliveries it hands over (a futex and a thread switch each), so
    /// while the broker keeps sending, deliveries are gathered for a short, bounded while.
    func wakeConsumers() {
        guard !sleepingSinks.isEmpty else { return }
        if unwokenDeliveries < Self.wakeBatchLimit,
            ContinuousClock.now - firstUnwokenAt < Self.wakeBatchDelay,
            let connection, connection.hasBufferedInput || connection.waitUntilReadable(milliseconds: 0)
        {
            return
        }
        for sink in sleepingSinks { sink.wake() }
        sleepingSinks.removeAll(keepingCapacity: true)
        unwokenDeliveries = 0
    }

    static let wakeBatchLimit = 256
    static let wakeBatchDelay = Duration.microseconds(200)

    func waitForWork(until callDeadline: ContinuousClock.Instant?) {
        socketMayBeReadable = true
        wakeConsumers()
        if !sleepingSinks.isEmpty { return }
        if let connection, connection.hasBufferedInput { return }
        guard shared.inbox.prepareToSleep() else { return }

        var timeout = Duration.seconds(1)
        if let callDeadline {
            // Rounded up, so that the deadline has passed when poll returns.
            timeout = min(timeout, max(.zero, callDeadline - .now) + .milliseconds(1))
        }
        if connection != nil, heartbeat > .zero {
            timeout = min(timeout, heartbeat / 4)
        }
        if let next = machine.nextAttemptAt {
            timeout = min(timeout, max(.zero, next - .now))
        }
        var descriptors = [pollfd(fd: shared.inbox.pollDescriptor, events: Int16(POLLIN), revents: 0)]
        if let connection {
            descriptors.append(pollfd(fd: connection.socketDescriptor, events: Int16(POLLIN), revents: 0))
        }
        let milliseconds = Int32(clamping: timeout.wholeMilliseconds)
        _ = poll(&descriptors, nfds_t(descriptors.count), milliseconds)
        shared.inbox.finishedSleeping(woken: descriptors[0].revents != 0)
        socketMayBeReadable = descriptors.count > 1 && descriptors[1].revents != 0
        if socketMayBeReadable {
            lastReceive = .now
        }
    }
}

// MARK: Shutdown

extension EngineLoop {
    /// Graceful shutdown sends what callers already handed over (publishes, acks) and waits a
    /// little for outstanding publisher confirms; requests that need a reply are failed instead.
    func shutDown(incoming: [EngineCommand]) {
        let handedOver = incoming.map { (id: park($0), kind: $0.kind) }
        perform(machine.shutdownRequested(incoming: handedOver))
        perform(machine.drained())
        logger.debug("bus I/O thread stopped")
    }

    func awaitConfirms(patience: Duration) {
        let deadline = ContinuousClock.now + patience
        while confirms.count > 0, connection != nil, ContinuousClock.now < deadline {
            socketMayBeReadable = true
            pumpInbound()
            if confirms.count > 0, let connection {
                _ = connection.waitUntilReadable(milliseconds: 50)
            }
        }
    }
}
