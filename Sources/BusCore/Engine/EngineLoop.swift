import Glibc
import Logging

/// The I/O loop. It is created on the engine's own thread and never leaves it, which is how the
/// rabbitmq-c connection stays confined to one thread: this type is not `Sendable`, and only
/// `Sendable` things (the inbox, the pending-call map, stream continuations) connect it to tasks.
///
/// Each turn: run queued commands, read what the broker sent, service heartbeats, then sleep in
/// `poll()` on the socket and the inbox's eventfd until either has something.
final class EngineLoop {
    /// Channel roles. Consumers live alone on their channel, so that a publish to a missing
    /// exchange (which closes the publishing channel) cannot take the subscriptions down with it.
    private enum Channel {
        static let consume: UInt16 = 1
        static let publish: UInt16 = 2
        static let confirm: UInt16 = 3
        static let scratch: UInt16 = 4
    }

    /// A class, so that routing a delivery to it costs one retain rather than a copy of its spec.
    private final class Consumer {
        /// Variable: run-time binding changes are kept here for the next reconnect.
        var spec: ConsumerSpec
        let sink: DeliveryQueue?
        var ready: CheckedContinuation<String, any Error>?
        var consumerTag: String?
        var queueName: String?

        init(spec: ConsumerSpec, sink: DeliveryQueue?, ready: CheckedContinuation<String, any Error>?) {
            self.spec = spec
            self.sink = sink
            self.ready = ready
        }
    }

    private let shared: EngineShared
    private var configuration: BusConfiguration { shared.configuration }
    private var logger: Logger
    private var lifecycle: ConnectionLifecycle
    private var connection: AMQPConnection?
    private var consumers: [UInt64: Consumer] = [:]
    private var consumerByTag: [String: UInt64] = [:]
    private var replyQueue: String?
    private var replyConsumerTag: String?
    private var confirms = ConfirmTracker<CheckedContinuation<Void, any Error>>()
    /// Acks of this turn, sent together (coalesced) once the turn's commands have run.
    private var acks = AckCoalescer()
    private var pendingAcks: [UInt64] = []
    /// Subscriptions whose consumer waits for deliveries read since the last wake-up.
    private var sleepingSinks: [DeliveryQueue] = []
    /// Deliveries handed to sleeping consumers since the first of them, for the batching bound.
    private var unwokenDeliveries = 0
    private var firstUnwokenAt = ContinuousClock.now
    /// Work that needs a connection, kept in order while there is none.
    private var deferred: [EngineCommand] = []
    private var deferredForShutdown: [EngineCommand] = []
    /// Whether the socket may have bytes to read: `poll()` said so, or nobody asked it yet.
    /// Reading only then saves a `recv()` that would fail with EAGAIN on every turn.
    private var socketMayBeReadable = true
    private var lastSend = ContinuousClock.now
    private var lastReceive = ContinuousClock.now
    private var heartbeat: Duration = .zero
    private var random = SystemRandomNumberGenerator()

    init(shared: EngineShared) {
        self.shared = shared
        self.logger = shared.logger
        let endpoints = shared.configuration.endpoints.count
        self.lifecycle = ConnectionLifecycle(
            policy: shared.configuration.reconnect, endpointCount: endpoints, firstEndpoint: Int.random(in: 0..<max(1, endpoints)),
            now: .now)
    }

    func run() {
        logger.debug("bus I/O thread started", metadata: ["amqp.url": "\(configuration.redactedURL)"])
        while true {
            let (commands, stopping) = shared.inbox.drain()
            if stopping {
                flush(commands)
                shutdown()
                return
            }
            // One clock read per turn: at tens of thousands of turns a second, each read shows.
            let now = ContinuousClock.now
            if case .connect(let attempt, let endpoint) = lifecycle.tick(now: now) {
                connect(attempt: attempt, to: configuration.endpoints[endpoint])
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
        deferred = shared.inbox.drain().commands
        shutdown()
    }

    // MARK: Connecting

    private func connect(attempt: Int, to endpoint: BusConfiguration.Endpoint) {
        do {
            let connection = try AMQPConnection(configuration: configuration, endpoint: endpoint)
            self.connection = connection
            try connection.openChannel(Channel.consume)
            try connection.openChannel(Channel.publish)
            try connection.openChannel(Channel.confirm)
            try connection.enableConfirms(channel: Channel.confirm)
            try connection.openChannel(Channel.scratch)
            heartbeat = .seconds(connection.negotiatedHeartbeat)
            lastSend = .now
            lastReceive = .now
            try declareConventionExchanges()
            guard case .established(let generation, let isReconnect) = lifecycle.connectSucceeded() else { return }
            shared.setConnected(to: endpoint)
            let url = configuration.redactedURL(of: endpoint)
            if isReconnect {
                shared.metrics.reconnects.increment()
                logger.notice("reconnected to the broker", metadata: ["amqp.url": "\(url)", "bus.generation": "\(generation)"])
            } else {
                logger.info("connected to the broker", metadata: ["amqp.url": "\(url)"])
            }
            try establishReplyQueue()
            for id in consumers.keys.sorted() {
                establish(consumerID: id)
            }
            let backlog = deferred
            deferred.removeAll()
            for command in backlog {
                execute(command)
            }
        } catch let error as BusError {
            connection?.close()
            connection = nil
            if lifecycle.isConnected {
                connectionLost(error)
            } else {
                _ = lifecycle.connectFailed(now: .now, random: Double.random(in: 0..<1, using: &random))
                let level: Logger.Level = attempt == 1 || attempt % 10 == 0 ? .warning : .debug
                logger.log(
                    level: level, "cannot reach the broker, will retry",
                    metadata: [
                        "amqp.url": "\(configuration.redactedURL(of: endpoint))", "bus.attempt": "\(attempt)", "error": "\(error.message)",
                    ])
            }
        } catch {
            connection = nil
            _ = lifecycle.connectFailed(now: .now, random: Double.random(in: 0..<1, using: &random))
        }
    }

    /// RackHD's exact flags: topic, durable, not auto-delete. Declaring is idempotent; a
    /// mismatch (406) means someone declared the name differently, which we report and survive.
    private func declareConventionExchanges() throws {
        guard let connection else { return }
        for exchange in Exchange.conventions {
            let name = configuration.name(of: exchange)
            do {
                try connection.declareExchange(
                    channel: Channel.scratch, name: name, type: Exchange.kind, passive: false, durable: Exchange.durable,
                    autoDelete: Exchange.autoDelete)
            } catch let error as BusError where error.code == .channelClosed {
                logger.error("exchange exists with different flags", metadata: ["amqp.exchange": "\(name)", "error": "\(error.message)"])
                try connection.openChannel(Channel.scratch)
            }
        }
    }

    private func establishReplyQueue() throws {
        guard let connection else { return }
        let name = "rackbus.reply.\(configuration.connectionName).\(Self.randomSuffix(using: &random))"
        let declared = try connection.declareQueue(
            channel: Channel.scratch, name: name, passive: false, durable: false, exclusive: true, autoDelete: true, arguments: [:])
        replyConsumerTag = try connection.consume(
            channel: Channel.consume, queue: declared.name, consumerTag: Self.replyConsumerTag, noAck: true, exclusive: true)
        replyQueue = declared.name
    }

    private func establish(consumerID id: UInt64) {
        guard let connection, let consumer = consumers[id] else { return }
        do {
            let queueName: String
            switch consumer.spec.queue {
            case .exclusive(let base):
                queueName = try connection.declareQueue(
                    channel: Channel.scratch, name: "\(base):\(Self.randomSuffix(using: &random))", passive: false,
                    durable: false, exclusive: true, autoDelete: true, arguments: [:]
                ).name
            case .shared(let name, let durable, let autoDelete, let arguments):
                queueName = try connection.declareQueue(
                    channel: Channel.scratch, name: name, passive: false, durable: durable, exclusive: false,
                    autoDelete: autoDelete, arguments: arguments
                ).name
            }
            try bind(queueName, consumer.spec.distinctBindings, on: connection)
            if let prefetch = consumer.spec.prefetch {
                try connection.setPrefetch(channel: Channel.consume, count: prefetch)
            }
            let tag = try connection.consume(
                channel: Channel.consume, queue: queueName, consumerTag: "c\(id)", noAck: consumer.spec.prefetch == nil, exclusive: false)
            consumer.consumerTag = tag
            consumer.queueName = queueName
            consumerByTag[tag] = id
            consumer.ready?.resume(returning: queueName)
            consumer.ready = nil
        } catch let error as BusError {
            if error.code == .channelClosed {
                // The broker refused this consumer (406 mismatched queue flags, 405 locked, 404 missing
                // exchange). Tell the subscriber instead of retrying a request that cannot succeed.
                try? connection.openChannel(Channel.scratch)
                logger.error("subscription refused by the broker", metadata: ["error": "\(error.message)"])
                consumer.ready?.resume(throwing: error)
                consumer.sink?.finish()
                consumers[id] = nil
            } else {
                // The connection is gone; establishment is retried after the reconnect.
                connectionLost(error)
            }
        } catch {
            connectionLost(BusError(code: .connectionLost, message: "\(error)"))
        }
    }

    // MARK: Commands

    private func execute(_ command: EngineCommand) {
        // Acks of a previous connection are meaningless: its deliveries come back redelivered.
        if case .ack(let token) = command, token.generation != lifecycle.currentGeneration || connection == nil { return }
        if case .reject(let token, _) = command, token.generation != lifecycle.currentGeneration || connection == nil { return }
        if case .unsubscribe(let id) = command {
            unsubscribe(id)
            return
        }
        if case .changeBindings(let id, let add, let remove, let continuation) = command {
            changeBindings(of: id, add: add, remove: remove, continuation)
            return
        }
        if case .subscribe(let id, let spec, let sink, let ready) = command {
            consumers[id] = Consumer(spec: spec, sink: sink, ready: ready)
            if connection != nil { establish(consumerID: id) }
            return
        }
        guard let connection else {
            keepForLater(command)
            return
        }
        do {
            switch command {
            case .publish(let message), .reply(let message, _):
                try connection.publish(
                    channel: Channel.publish, exchange: message.exchange, routingKey: message.routingKey,
                    mandatory: message.mandatory, properties: message.properties, body: message.body)
                lastSend = .now
                if case .reply(_, let token) = command, token.generation == lifecycle.currentGeneration {
                    pendingAcks.append(token.deliveryTag)
                }
            case .publishConfirmed(let message, let continuation):
                confirms.add(continuation, messageID: message.properties.messageID)
                try connection.publish(
                    channel: Channel.confirm, exchange: message.exchange, routingKey: message.routingKey,
                    mandatory: message.mandatory, properties: message.properties, body: message.body)
                lastSend = .now
            case .call(var message, let id):
                // A call that timed out or was cancelled while it waited is not sent at all.
                guard shared.pending.markSent(id, generation: lifecycle.currentGeneration) else { return }
                message.properties.replyTo = replyQueue
                try connection.publish(
                    channel: Channel.publish, exchange: message.exchange, routingKey: message.routingKey,
                    mandatory: false, properties: message.properties, body: message.body)
                lastSend = .now
            case .ack(let token):
                pendingAcks.append(token.deliveryTag)
            case .ackAll(let tokens):
                for token in tokens where token.generation == lifecycle.currentGeneration {
                    pendingAcks.append(token.deliveryTag)
                }
            case .reject(let token, let requeue):
                try connection.reject(channel: Channel.consume, deliveryTag: token.deliveryTag, requeue: requeue)
                acks.settledIndividually(token.deliveryTag)
                lastSend = .now
            case .checkExchange(let name, let continuation):
                try answer(continuation, notFound: false) {
                    try connection.declareExchange(
                        channel: Channel.scratch, name: name, type: Exchange.kind, passive: true, durable: false, autoDelete: false)
                    return true
                }
            case .deleteQueue(let name, let continuation):
                try answer(continuation) { try connection.deleteQueue(channel: Channel.scratch, name: name) }
            case .declareWorkQueue(let name, let bindings, let arguments, let continuation):
                try answer(continuation) {
                    _ = try connection.declareQueue(
                        channel: Channel.scratch, name: name, passive: false, durable: true, exclusive: false, autoDelete: false,
                        arguments: arguments)
                    try bind(name, bindings, on: connection)
                }
            case .inspectQueue(let name, let continuation):
                try answer(continuation) {
                    let declared = try connection.declareQueue(
                        channel: Channel.scratch, name: name, passive: true, durable: false, exclusive: false, autoDelete: false,
                        arguments: [:])
                    return QueueStatus(name: declared.name, messages: Int(declared.messages), consumers: Int(declared.consumers))
                }
            case .simulateConnectionLoss:
                connectionLost(BusError(code: .connectionLost, message: "connection dropped on request"))
            case .subscribe, .unsubscribe, .changeBindings:
                break
            }
        } catch let error as BusError {
            // A failed write means the socket is gone. Keep the command for the next connection
            // when it is safe to repeat; confirmed publishes are failed by the reset in `connectionLost`.
            if case .publish = command { keepForLater(command) }
            connectionLost(error)
        } catch {
            connectionLost(BusError(code: .connectionLost, message: "\(error)"))
        }
    }

    /// Applies a run-time binding change. Bindings are counted: the broker is asked to bind only
    /// for the first holder of a binding and to unbind only when its last holder removes it, so
    /// overlapping holders (two tasks for one node) need no ordering between themselves.
    private func changeBindings(
        of id: UInt64, add: [Binding], remove: [Binding], _ continuation: CheckedContinuation<Void, any Error>
    ) {
        guard let consumer = consumers[id] else {
            continuation.resume(throwing: BusError(code: .cancelled, message: "the subscription has ended"))
            return
        }
        let before = consumer.spec.bindings
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
        // Not consuming on this connection: `establish` applies the spec after the reconnect.
        guard let connection, consumer.consumerTag != nil, let queue = consumer.queueName else {
            continuation.resume()
            return
        }
        do {
            for binding in toBind {
                try connection.bindQueue(channel: Channel.scratch, queue: queue, exchange: binding.exchange, routingKey: binding.pattern)
            }
            for binding in toUnbind {
                try connection.unbindQueue(channel: Channel.scratch, queue: queue, exchange: binding.exchange, routingKey: binding.pattern)
            }
            continuation.resume()
        } catch let error as BusError where error.code == .channelClosed {
            // Refused (say, a missing exchange): not remembered, or every reconnect would fail the
            // whole consumer. Bindings made earlier in this change last until the next reconnect.
            consumer.spec.bindings = before
            continuation.resume(throwing: error)
            do {
                try connection.openChannel(Channel.scratch)
            } catch let error as BusError {
                connectionLost(error)
            } catch {}
        } catch let error as BusError {
            // The connection is gone; the spec holds the change and the reconnect applies it.
            continuation.resume()
            connectionLost(error)
        } catch {
            continuation.resume()
            connectionLost(BusError(code: .connectionLost, message: "\(error)"))
        }
    }

    /// Binds `queue` with each of `bindings` (on the scratch channel, where a refusal cannot
    /// take the consumers down).
    private func bind(_ queue: String, _ bindings: [Binding], on connection: AMQPConnection) throws {
        for binding in bindings {
            try connection.bindQueue(channel: Channel.scratch, queue: queue, exchange: binding.exchange, routingKey: binding.pattern)
        }
    }

    /// Runs an administrative command on the scratch channel and answers its caller before
    /// anything else can fail. A broker refusal closes only that channel: it is reopened, and a
    /// 404 becomes `notFound` when the command has such an answer. Any other error means the
    /// connection is gone: the caller hears it, and it is rethrown so the loop reconnects.
    private func answer<T: Sendable>(_ continuation: CheckedContinuation<T, any Error>, notFound: T? = nil, _ body: () throws -> T) throws {
        let result: T
        do {
            result = try body()
        } catch let error as BusError where error.code == .channelClosed {
            if let notFound, error.replyCode == 404 {
                continuation.resume(returning: notFound)
            } else {
                continuation.resume(throwing: error)
            }
            try connection?.openChannel(Channel.scratch)
            return
        } catch {
            continuation.resume(throwing: error)
            throw error
        }
        continuation.resume(returning: result)
    }

    /// Answers a command that will never run, whatever it waits on.
    private func fail(_ command: EngineCommand, with error: BusError) {
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

    private func keepForLater(_ command: EngineCommand) {
        switch command {
        case .ack, .ackAll, .reject, .simulateConnectionLoss:
            return
        default:
            break
        }
        guard deferred.count < configuration.maxBufferedOperations else {
            shared.metrics.droppedPublishes.increment()
            fail(command, with: BusError(code: .backpressure, message: "too many operations wait for the broker"))
            return
        }
        deferred.append(command)
    }

    private func unsubscribe(_ id: UInt64) {
        guard let consumer = consumers.removeValue(forKey: id) else { return }
        consumer.sink?.finish()
        consumer.ready?.resume(throwing: BusError(code: .cancelled, message: "subscription cancelled"))
        guard let tag = consumer.consumerTag else { return }
        consumerByTag[tag] = nil
        guard let connection else { return }
        do {
            try connection.cancel(channel: Channel.consume, consumerTag: tag)
        } catch let error as BusError where error.code == .channelClosed {
            connectionLost(error)
        } catch let error as BusError {
            connectionLost(error)
        } catch {}
    }

    // MARK: Inbound

    /// Reads up to a bounded number of events, so that queued commands are never starved.
    private func pumpInbound() {
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
            } catch let error as BusError {
                connectionLost(error)
                return
            } catch {
                return
            }
            guard let event else { return }
            handle(event)
        }
    }

    private func handle(_ event: InboundEvent) {
        switch event {
        case .delivery(let delivery):
            if delivery.consumerTag == replyConsumerTag {
                deliverReply(delivery)
            } else if let id = consumerByTag[delivery.consumerTag], let consumer = consumers[id], let sink = consumer.sink {
                if consumer.spec.prefetch != nil {
                    acks.delivered(delivery.deliveryTag)
                }
                if sink.append(ConsumedDelivery(delivery: delivery, generation: lifecycle.currentGeneration)) {
                    if unwokenDeliveries == 0 { firstUnwokenAt = .now }
                    unwokenDeliveries += 1
                    if !sleepingSinks.contains(where: { $0 === sink }) { sleepingSinks.append(sink) }
                }
            }
        case .publishAck(let channel, let tag, let multiple) where channel == Channel.confirm:
            for (continuation, outcome) in confirms.ack(tag, multiple: multiple) {
                switch outcome {
                case .confirmed, .nacked: continuation.resume()
                case .unroutable: continuation.resume(throwing: BusError(code: .unroutable, message: "no queue is bound for this message"))
                }
            }
        case .publishNack(let channel, let tag, let multiple) where channel == Channel.confirm:
            for (continuation, _) in confirms.nack(tag, multiple: multiple) {
                continuation.resume(throwing: BusError(code: .publishNacked, message: "the broker refused the message"))
            }
        case .returned(_, let code, let text, let exchange, let routingKey, let properties):
            confirms.markReturned(messageID: properties.messageID)
            logger.debug(
                "message returned",
                metadata: [
                    "amqp.exchange": "\(exchange)", "amqp.routing_key": "\(routingKey)", "amqp.reply_code": "\(code)",
                    "amqp.reply_text": "\(text)",
                ])
        case .consumerCancelled(_, let tag):
            // The broker cancelled a consumer (its queue was deleted). Re-establish it.
            if let id = consumerByTag.removeValue(forKey: tag) {
                logger.warning("the broker cancelled a subscription; re-establishing it", metadata: ["amqp.consumer_tag": "\(tag)"])
                consumers[id]?.consumerTag = nil
                establish(consumerID: id)
            } else if tag == replyConsumerTag {
                try? establishReplyQueue()
            }
        case .channelClosed(let channel, let code, let text):
            channelClosed(channel, code: code, text: text)
        case .connectionClosed(let code, let text):
            connectionLost(BusError(code: .connectionLost, message: "the broker closed the connection: \(text)", replyCode: code))
        case .blocked(let reason):
            logger.warning("the broker blocks publishing", metadata: ["reason": "\(reason)"])
        case .unblocked:
            logger.notice("the broker accepts publishing again")
        case .publishAck, .publishNack, .ignored:
            break
        }
    }

    private func deliverReply(_ delivery: InboundDelivery) {
        let id = shared.correlation.decode(delivery.properties.correlationID)
        if let id, CommandWire.isInterim(delivery.properties.type) {
            if !shared.pending.deliverInterim(id, delivery, now: .now) { shared.metrics.lateReplies.increment() }
            return
        }
        guard let id, shared.pending.resolve(id, with: delivery) else {
            shared.metrics.lateReplies.increment()
            logger.debug(
                "dropped a reply nobody waits for", metadata: ["amqp.correlation_id": "\(delivery.properties.correlationID ?? "-")"])
            return
        }
    }

    /// Sends this turn's acks, one `multiple` ack covering every contiguous one where possible.
    private func flushAcks() {
        guard !pendingAcks.isEmpty else { return }
        defer { pendingAcks.removeAll(keepingCapacity: true) }
        guard let connection else { return }
        do {
            for frame in acks.acknowledge(pendingAcks) {
                try connection.ack(channel: Channel.consume, deliveryTag: frame.tag, multiple: frame.multiple)
            }
            lastSend = .now
        } catch let error as BusError {
            connectionLost(error)
        } catch {}
    }

    private func channelClosed(_ channel: UInt16, code: Int, text: String) {
        guard let connection else { return }
        logger.error(
            "the broker closed a channel",
            metadata: ["amqp.channel": "\(channel)", "amqp.reply_code": "\(code)", "amqp.reply_text": "\(text)"])
        do {
            switch channel {
            case Channel.publish, Channel.scratch:
                try connection.openChannel(channel)
            case Channel.confirm:
                let error = BusError(code: .channelClosed, message: text, replyCode: code)
                for continuation in confirms.reset() { continuation.resume(throwing: error) }
                try connection.openChannel(channel)
                try connection.enableConfirms(channel: channel)
            default:
                // The consuming channel carries every subscription: rebuild all of it cleanly.
                connectionLost(BusError(code: .channelClosed, message: text, replyCode: code))
            }
        } catch let error as BusError {
            connectionLost(error)
        } catch {}
    }

    private func connectionLost(_ error: BusError) {
        guard case .lost(let generation, _) = lifecycle.connectionLost(now: .now) else { return }
        connection?.close()
        connection = nil
        replyQueue = nil
        replyConsumerTag = nil
        consumerByTag.removeAll()
        acks.reset()
        pendingAcks.removeAll()
        for id in consumers.keys { consumers[id]?.consumerTag = nil }
        shared.setDisconnected()
        logger.warning("lost the broker connection; reconnecting", metadata: ["error": "\(error.message)"])
        shared.pending.failSent(upTo: generation) { slot in
            BusError(code: .connectionLost, message: "connection lost while waiting for \(slot.description)")
        }
        let inDoubt = BusError(code: .connectionLost, message: "connection lost before the broker confirmed the message")
        for continuation in confirms.reset() { continuation.resume(throwing: inDoubt) }
    }

    // MARK: Heartbeats and waiting

    private func serviceHeartbeats(now: ContinuousClock.Instant) {
        guard let connection, heartbeat > .zero else { return }
        if now - lastReceive > heartbeat * 2 {
            connectionLost(BusError(code: .connectionLost, message: "no heartbeat from the broker for \(heartbeat * 2)"))
            return
        }
        if now - lastSend >= heartbeat / 2 {
            do {
                try connection.sendHeartbeat()
                lastSend = now
            } catch let error as BusError {
                connectionLost(error)
            } catch {}
        }
    }

    /// Wakes the consumers waiting for what was read. Under load, a wake-up per read pass
    /// costs more than the deliveries it hands over (a futex and a thread switch each), so
    /// while the broker keeps sending, deliveries are gathered for a short, bounded while.
    private func wakeConsumers() {
        guard !sleepingSinks.isEmpty else { return }
        if unwokenDeliveries < Self.wakeBatchLimit, ContinuousClock.now - firstUnwokenAt < Self.wakeBatchDelay,
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

    private func waitForWork(until callDeadline: ContinuousClock.Instant?) {
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
        if let next = lifecycle.nextAttemptAt {
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

    // MARK: Shutdown

    /// Graceful shutdown sends what callers already handed over (publishes, acks) and waits a
    /// little for outstanding publisher confirms; requests that need a reply are failed instead.
    private func flush(_ commands: [EngineCommand]) {
        for command in deferred + commands {
            switch command {
            case .publish, .reply, .publishConfirmed, .ack, .reject:
                if connection != nil {
                    execute(command)
                } else {
                    deferredForShutdown.append(command)
                }
            default:
                deferredForShutdown.append(command)
            }
        }
        flushAcks()
        deferred = deferredForShutdown
        deferredForShutdown.removeAll()
        let patience = ContinuousClock.now + .seconds(2)
        while confirms.count > 0, connection != nil, ContinuousClock.now < patience {
            socketMayBeReadable = true
            pumpInbound()
            if confirms.count > 0, let connection {
                _ = connection.waitUntilReadable(milliseconds: 50)
            }
        }
    }

    private func shutdown() {
        _ = lifecycle.shutdownRequested()
        let closed = BusError(code: .shutdown, message: "the bus is shutting down")
        for command in deferred { fail(command, with: closed) }
        deferred.removeAll()
        for continuation in confirms.reset() { continuation.resume(throwing: closed) }
        for (_, consumer) in consumers {
            consumer.sink?.finish()
            consumer.ready?.resume(throwing: closed)
        }
        consumers.removeAll()
        if let connection {
            for tag in consumerByTag.keys {
                try? connection.cancel(channel: Channel.consume, consumerTag: tag)
            }
            connection.close()
        }
        connection = nil
        shared.setDisconnected()
        shared.pending.failAll { _ in closed }
        logger.debug("bus I/O thread stopped")
    }

    /// Our own short consumer tags (the broker's are 31 characters) keep the per-delivery lookup cheap.
    static let replyConsumerTag = "r"

    static func randomSuffix(using generator: inout SystemRandomNumberGenerator) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<7).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
    }
}
