import Logging

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
                    acks.acknowledge(token.deliveryTag, on: token.channel)
                }
            case .publishConfirmed(let message, let waiter):
                confirms.add(waiter, messageID: message.properties.messageID)
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
                acks.acknowledge(token.deliveryTag, on: token.channel)
            case .ackAll(let tokens):
                for token in tokens where token.generation == machine.currentGeneration {
                    acks.acknowledge(token.deliveryTag, on: token.channel)
                }
            case .reject(let token, let requeue):
                try connection.reject(channel: token.channel, deliveryTag: token.deliveryTag, requeue: requeue)
                acks.settledIndividually(token.deliveryTag, on: token.channel)
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
        case .publishConfirmed(_, let waiter): settle(waiter, .failure(error))
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
