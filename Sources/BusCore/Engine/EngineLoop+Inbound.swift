import Logging

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
                    acks.delivered(delivery.deliveryTag, on: delivery.channel)
                }
                let sink = subscriber.sink
                if sink.append(ConsumedDelivery(delivery: delivery, generation: machine.currentGeneration)) {
                    if unwokenDeliveries == 0 { firstUnwokenAt = .now }
                    unwokenDeliveries += 1
                    if !sleepingSinks.contains(where: { $0 === sink }) { sleepingSinks.append(sink) }
                }
            }
        case .publishAck(let channel, let tag, let multiple) where channel == Channel.confirm.rawValue:
            for (waiter, outcome) in confirms.ack(tag, multiple: multiple) {
                switch outcome {
                case .confirmed, .nacked: settle(waiter, .success(()))
                case .unroutable:
                    settle(waiter, .failure(BusError(code: .unroutable, message: "no queue is bound for this message")))
                }
            }
        case .publishNack(let channel, let tag, let multiple) where channel == Channel.confirm.rawValue:
            for (waiter, _) in confirms.nack(tag, multiple: multiple) {
                settle(waiter, .failure(BusError(code: .publishNacked, message: "the broker refused the message")))
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
        guard acks.hasPending else { return }
        let frames = acks.takeFrames()
        guard let connection else { return }
        do {
            for frame in frames {
                try connection.ack(channel: frame.channel, deliveryTag: frame.tag, multiple: frame.multiple)
            }
            lastSend = .now
        } catch {
            lose(error)
        }
    }
}
