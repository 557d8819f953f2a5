import DequeModule
import Logging

/// One message from a subscription, decoded.
public struct Delivery<Message: Sendable>: Sendable {
    public let message: Message
    public let exchange: String
    public let routingKey: String
    public let properties: MessageProperties
    public let redelivered: Bool
    /// The raw body, for logging or forwarding.
    public let body: [UInt8]
    let acknowledger: Acknowledger?

    /// Acknowledges a work-queue delivery. Auto-acknowledged (broadcast) deliveries ignore it.
    public func ack() {
        acknowledger?.send(.ack)
    }

    /// Rejects a work-queue delivery. Without `requeue` it is dropped, or dead-lettered when the
    /// queue has a dead-letter policy; with `requeue` it goes back for another consumer.
    public func reject(requeue: Bool = false) {
        acknowledger?.send(requeue ? .requeue : .drop)
    }

    /// The AMQP `type` property.
    public var type: String? { properties.type }
}

/// Thrown by a subscription's decoder to pass over a message quietly (it is acknowledged).
struct NotForThisSubscriber: Error {}

/// Thrown by a work queue's decoder for a message that the broker did not route through one of
/// the queue's exchanges (it came by name, through the default exchange): it is refused.
struct NotThroughBoundExchange: Error {
    let bound: Set<String>
}

struct Acknowledger: Sendable {
    enum Verdict {
        case ack
        case requeue
        case drop
    }

    let engine: BusEngine
    let token: AckToken

    func send(_ verdict: Verdict) {
        switch verdict {
        case .ack: engine.submit(.ack(token))
        case .requeue: engine.submit(.reject(token, requeue: true))
        case .drop: engine.submit(.reject(token, requeue: false))
        }
    }
}

/// An `AsyncSequence` of typed deliveries. It survives reconnects: the bus re-creates the queue,
/// bindings and consumer behind it. A body that does not decode is logged, counted and
/// acknowledged (or rejected on a work queue, so a dead-letter policy can catch it): it is never
/// redelivered forever and never ends the sequence.
///
/// The subscription ends when the bus shuts down or ``cancel()`` is called; dropping every
/// reference to it cancels it too.
public struct Subscription<Message: Sendable>: AsyncSequence, Sendable {
    public typealias Element = Delivery<Message>

    /// The queue behind the subscription (for exclusive queues, the name on the current connection).
    public let queueName: String
    /// The engine's consumer id, for run-time binding changes.
    let id: UInt64
    let handle: SubscriptionHandle
    let engine: BusEngine
    let acknowledgement: ConsumerSpec.Acknowledgement
    let decode: @Sendable (InboundDelivery) throws -> Message

    public func cancel() {
        handle.queue.consumerGone()
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(subscription: self)
    }

    public struct Iterator: AsyncIteratorProtocol {
        let subscription: Subscription
        /// Deliveries taken from the queue in one go, consumed from `next`.
        private var batch: Deque<ConsumedDelivery> = []
        /// Taken broadcast deliveries not yet acknowledged.
        private var taken: [AckToken] = []

        init(subscription: Subscription) {
            self.subscription = subscription
        }

        /// Taken is as good as handled for a broadcast. Acknowledging a quarter window at a time
        /// keeps the broker sending (it stops only when a whole window is unacknowledged) while
        /// costing one ack frame and one engine wake-up per quarter window, not per batch.
        private mutating func acknowledgeTaken(_ batch: Deque<ConsumedDelivery>, window: Int) {
            taken.append(contentsOf: batch.map(\.ackToken))
            guard taken.count >= Swift.max(1, window / 4) else { return }
            subscription.engine.submit(.ackAll(taken))
            taken.removeAll(keepingCapacity: true)
        }

        private mutating func nextConsumed() async -> ConsumedDelivery? {
            if batch.isEmpty {
                batch = await subscription.handle.queue.takeAll()
                if batch.isEmpty { return nil }
                if case .onTake(let window) = subscription.acknowledgement {
                    acknowledgeTaken(batch, window: Int(window))
                }
            }
            return batch.popFirst()
        }

        public mutating func next() async -> Delivery<Message>? {
            while let consumed = await nextConsumed() {
                let raw = consumed.delivery
                let acknowledger =
                    subscription.acknowledgement.isByConsumer
                    ? Acknowledger(
                        engine: subscription.engine, token: consumed.ackToken)
                    : nil
                do {
                    let message = try subscription.decode(raw)
                    return Delivery(
                        message: message, exchange: raw.exchange, routingKey: raw.routingKey, properties: raw.properties,
                        redelivered: raw.redelivered, body: raw.body, acknowledger: acknowledger)
                } catch is NotForThisSubscriber {
                    // A filtered subscription passing over a message meant for someone else.
                    acknowledger?.send(.ack)
                } catch let refused as NotThroughBoundExchange {
                    subscription.engine.shared.logger.error(
                        "refused a message that did not come through the queue's exchanges",
                        metadata: [
                            "amqp.queue": "\(subscription.queueName)",
                            "amqp.exchange": "\(raw.exchange.isEmpty ? "(default)" : raw.exchange)",
                            "amqp.routing_key": "\(raw.routingKey)", "amqp.message_id": "\(raw.properties.messageID ?? "-")",
                            "bus.bound_exchanges": "\(refused.bound.sorted().joined(separator: ","))",
                        ])
                    acknowledger?.send(.drop)
                } catch {
                    subscription.engine.shared.metrics.undecodable.increment()
                    subscription.engine.shared.logger.warning(
                        "dropped a message that does not decode",
                        metadata: [
                            "amqp.exchange": "\(raw.exchange)", "amqp.routing_key": "\(raw.routingKey)",
                            "amqp.type": "\(raw.properties.type ?? "-")", "error": "\(error)",
                        ])
                    acknowledger?.send(.drop)
                }
            }
            return nil
        }
    }
}
