import Logging

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
        shared.setConnected(to: endpoint)
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
        let passive = !configuration.declaresExchanges
        for exchange in Exchange.conventions {
            let name = configuration.name(of: exchange)
            do {
                try connection.declareExchange(
                    channel: Channel.scratch.rawValue, name: name, type: Exchange.kind, passive: passive,
                    durable: Exchange.durable,
                    autoDelete: Exchange.autoDelete)
            } catch let error as BusError where error.code == .channelClosed {
                // The bus still connects: what uses the exchange fails with the broker's reason.
                logger.error(
                    "\(Self.exchangeProblem(replyCode: error.replyCode, passive: passive))",
                    metadata: ["amqp.exchange": "\(name)", "error": "\(error.message)"])
                try connection.openChannel(Channel.scratch.rawValue)
            }
        }
    }

    /// What a refused exchange declaration means, for the operator. Pure.
    static func exchangeProblem(replyCode: Int?, passive: Bool) -> String {
        switch replyCode {
        case 404 where passive:
            "exchange does not exist: with exchanges=passive an administrator declares the nine exchanges (scripts/broker users does)"
        case 403:
            "not allowed to declare the exchange: give the user configure permission on it, or declare the exchanges once as an administrator and add exchanges=passive to the URL"
        default:
            "exchange exists with different flags"
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
            let tag: String
            let channel = spec.channel
            do {
                if let prefetch = spec.prefetch {
                    try connection.setPrefetch(channel: channel.rawValue, count: prefetch)
                }
                tag = try connection.consume(
                    channel: channel.rawValue, queue: queueName, consumerTag: "c\(id)",
                    noAck: spec.prefetch == nil,
                    exclusive: false)
            } catch let error as BusError where error.code == .channelClosed {
                // A consuming channel is closed, not the scratch one.
                logger.warning(
                    "the broker refused a consumer; rebuilding the connection",
                    metadata: ["amqp.queue": "\(queueName)", "error": "\(error.message)"])
                perform(machine.consumeRefused(id: id, Failure(error), now: .now))
                return
            }
            perform(machine.consumerEstablished(id: id, consumerTag: tag, queue: queueName, channel: channel))
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
