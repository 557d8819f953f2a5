import BusCore
import Logging
import Metrics
import Synchronization

/// Sends the messages that stored graph changes hold in the outbox, confirmed by the broker, and
/// forgets each once it is confirmed. What its writer could not send (the broker was away, or
/// the writer died) any instance's ``sweep()`` sends later: a message is sent at least once, and
/// its receivers ignore a duplicate (the Scheduler by task id, task runners by their journal,
/// the engine by the task's state).
///
/// A writer does not wait for the broker: its change is stored, so its work is done. The
/// confirms are gathered, and ``forgetSettled()`` forgets (or postpones) their messages a batch
/// at a time, in one store write rather than one per change.
final class OutboxRelay: Sendable {
    private let bus: MessageBus
    private let store: any GraphStore
    private let logger: Logger
    /// Counts what a sweep sends: messages their writer could not.
    private let resent: Counter
    /// How often a sweep looks for messages that are due.
    static let sweepInterval = Duration.milliseconds(500)
    /// How long a swept message is leased to the sweeper that took it.
    static let lease = Duration.seconds(10)

    /// Messages whose confirm came, to forget, and those the broker refused, to postpone.
    private struct Settled {
        var confirmed: [String] = []
        var failed: [OutboxMessage] = []
        /// Whether ``forgetSettled()`` waits for a signal (rather than for its next batch).
        var idle = false
        var isEmpty: Bool { confirmed.isEmpty && failed.isEmpty }

        /// What is here, leaving nothing.
        mutating func takeAll() -> Settled {
            defer { self = Settled() }
            return self
        }
    }

    private let settled = Mutex(Settled())
    private let settledSignal: AsyncStream<Void>.Continuation
    private let settledSignals: AsyncStream<Void>
    /// How long ``forgetSettled()`` gathers confirms after a batch before it writes the next one.
    static let forgetInterval = Duration.milliseconds(20)

    init(bus: MessageBus, store: any GraphStore, logger: Logger, resent: Counter) {
        self.bus = bus
        self.store = store
        self.logger = logger
        self.resent = resent
        (settledSignals, settledSignal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Sends `messages`, all at once, without waiting for the broker: ``forgetSettled()`` forgets
    /// each once confirmed, or makes it due again soon, for the sweep, when it was not.
    func send(_ messages: [OutboxMessage]) {
        for message in messages {
            bus.publishRawConfirmed(
                body: message.body, toExchangeNamed: message.exchange, routingKey: message.routingKey, type: message.type,
                persistent: message.persistent, mandatory: message.mandatory,
                headers: WorkflowHeaders.marking(repeated: message.attempts > 0)
            ) { result in
                self.settle(message, result)
            }
        }
    }

    /// On the bus's I/O thread: keep it short.
    private func settle(_ message: OutboxMessage, _ result: Result<Void, BusError>) {
        let wake = settled.withLock { settled in
            switch result {
            case .success: settled.confirmed.append(message.id)
            case .failure: settled.failed.append(message)
            }
            defer { settled.idle = false }
            return settled.idle
        }
        if case .failure(let error) = result {
            logger.error(
                "could not publish; it will be retried", metadata: ["amqp.routing_key": "\(message.routingKey)", "error": "\(error)"])
        }
        if wake { settledSignal.yield() }
    }

    /// Forgets confirmed messages and postpones refused ones, a batch per store write, until
    /// cancelled; then once more for what is left.
    func forgetSettled() async {
        var signals = settledSignals.makeAsyncIterator()
        while !Task.isCancelled {
            let batch = settled.withLock { settled -> Settled? in
                if settled.isEmpty {
                    settled.idle = true
                    return nil
                }
                return settled.takeAll()
            }
            guard let batch else {
                _ = await signals.next()
                continue
            }
            await forget(batch)
            try? await Task.sleep(for: Self.forgetInterval)
        }
        await forget(settled.withLock { $0.takeAll() })
    }

    private func forget(_ batch: Settled) async {
        await postpone(batch.failed)
        await forget(batch.confirmed)
    }

    /// Sends due messages until cancelled: every ``sweepInterval``, and at once again while a
    /// full batch was due.
    func sweep() async {
        let batch = 256
        while !Task.isCancelled {
            // While the broker is away, wait for it rather than fail each message at once.
            guard (try? await bus.waitUntilConnected(timeout: .seconds(5))) != nil else { continue }
            let due: [OutboxMessage]
            do {
                due = try await store.takeDueMessages(limit: batch, lease: Self.lease)
            } catch {
                logger.warning("could not read the outbox", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: Self.sweepInterval)
                continue
            }
            if !due.isEmpty {
                logger.notice("sending messages left in the outbox", metadata: ["outbox.count": "\(due.count)"])
                resent.increment(by: Int64(due.count))
                await deliver(due)
            }
            if due.count < batch { try? await Task.sleep(for: Self.sweepInterval) }
        }
    }

    /// Publishes `messages`, forgets those the broker confirmed, and makes each failed one due
    /// again after its backoff (a writer's own send counts as its first failure).
    private func deliver(_ messages: [OutboxMessage]) async {
        let confirmed = await publish(messages)
        await postpone(messages.filter { !confirmed.contains($0.id) })
        await forget(Array(confirmed))
    }

    private func postpone(_ messages: [OutboxMessage]) async {
        for message in messages {
            do {
                try await store.postponeMessage(message.id, by: OutboxMessage.retryDelay(afterFailures: message.attempts))
            } catch {
                // Still due after its grace period or lease.
                logger.warning("could not reschedule a message", metadata: ["outbox.id": "\(message.id)", "error": "\(error)"])
            }
        }
    }

    /// The ids of the messages the broker confirmed.
    private func publish(_ messages: [OutboxMessage]) async -> Set<String> {
        await withTaskGroup(of: String?.self) { group in
            for message in messages {
                group.addTask {
                    do {
                        try await self.bus.publishRawConfirmed(
                            body: message.body, toExchangeNamed: message.exchange, routingKey: message.routingKey, type: message.type,
                            persistent: message.persistent, mandatory: message.mandatory,
                            // Sent before, perhaps received: its receivers look for a duplicate.
                            headers: WorkflowHeaders.marking(repeated: message.attempts > 0))
                        return message.id
                    } catch {
                        self.logger.error(
                            "could not publish; it will be retried",
                            metadata: ["amqp.routing_key": "\(message.routingKey)", "error": "\(error)"])
                        return nil
                    }
                }
            }
            var confirmed: Set<String> = []
            for await id in group {
                if let id { confirmed.insert(id) }
            }
            return confirmed
        }
    }

    private func forget(_ ids: [String]) async {
        do {
            try await store.removeMessages(ids)
        } catch {
            // They are sent again after their grace period; receivers ignore the duplicates.
            // (Stopping, that is expected, not worth a warning.)
            if !Task.isCancelled {
                logger.warning("could not clear sent messages from the outbox", metadata: ["error": "\(error)"])
            }
        }
    }
}
