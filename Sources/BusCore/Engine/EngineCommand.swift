/// A message to send, fully encoded, as it crosses from a task to the I/O thread.
struct OutboundMessage: Sendable {
    var exchange: String
    var routingKey: String
    var properties: MessageProperties
    var body: [UInt8]
    var mandatory: Bool = false
}

/// Where a consumer's queue comes from.
enum QueueSpec: Sendable, Equatable {
    /// A private queue (exclusive, auto-delete) named `<base>:<random>`, renamed on every
    /// reconnect so that a dying connection's queue can never lock the new one out.
    case exclusive(base: String)
    /// A named queue shared by every replica that consumes it.
    case shared(name: String, durable: Bool, autoDelete: Bool, arguments: [String: HeaderValue])
}

struct Binding: Sendable, Hashable {
    var exchange: String
    var pattern: String
}

/// Everything needed to (re)establish a consumer after any reconnect.
struct ConsumerSpec: Sendable {
    var queue: QueueSpec
    /// A multiset: a binding added at run time by several holders (see `changeBindings`) appears
    /// once per holder, so that one holder's removal does not unbind it for the others.
    var bindings: [Binding]

    /// Each binding once, in first-seen order: what the broker is asked for.
    var distinctBindings: [Binding] {
        var seen = Set<Binding>()
        return bindings.filter { seen.insert($0).inserted }
    }
    var acknowledgement: Acknowledgement

    /// Who acknowledges deliveries, and so how many the broker may have outstanding.
    enum Acknowledgement: Sendable, Equatable {
        /// Auto-ack: the broker pushes everything at once.
        case automatic
        /// The consumer acks each delivery (work queues, RPC servers).
        case byConsumer(prefetch: UInt16)
        /// The subscription acks deliveries as its consumer takes them (a broadcast window).
        case onTake(window: UInt16)

        var isByConsumer: Bool {
            if case .byConsumer = self { return true }
            return false
        }
    }

    /// Where it consumes: work deliveries, acknowledged one by one, apart from broadcast ones,
    /// acknowledged a quarter window at a time (see ``EngineStateMachine/Channel``).
    var channel: EngineStateMachine.Channel {
        acknowledgement.isByConsumer ? .consume : .broadcast
    }

    /// The consumer's prefetch, or `nil` for auto-ack.
    var prefetch: UInt16? {
        switch acknowledgement {
        case .automatic: nil
        case .byConsumer(let count), .onTake(let count): count
        }
    }
}

/// Identifies a delivery for ack/reject; stale tokens (from a previous connection) are ignored.
struct AckToken: Sendable, Hashable {
    var generation: UInt64
    /// Delivery tags count per channel.
    var channel: UInt16
    var deliveryTag: UInt64
}

/// A delivery handed to a subscriber, stamped with the connection it came from.
struct ConsumedDelivery: Sendable {
    var delivery: InboundDelivery
    var generation: UInt64

    /// What acknowledges or rejects this delivery.
    var ackToken: AckToken { AckToken(generation: generation, channel: delivery.channel, deliveryTag: delivery.deliveryTag) }
}

/// Work for the I/O thread. Everything that touches the C connection goes through here.
enum EngineCommand: Sendable {
    case publish(OutboundMessage)
    /// An RPC server's answer and the acknowledgement of its request, in one command so that
    /// answering costs the I/O thread one wake-up. The ack is skipped if the connection changed.
    case reply(OutboundMessage, acknowledging: AckToken)
    case publishConfirmed(OutboundMessage, ConfirmWaiter)
    /// An RPC request; the loop fills in `reply_to` with the current reply queue.
    case call(OutboundMessage, id: UInt64)
    case subscribe(
        id: UInt64, ConsumerSpec, DeliveryQueue, ready: CheckedContinuation<String, any Error>)
    case unsubscribe(id: UInt64)
    /// Adds and removes bindings of a consumer's queue at run time. The consumer's spec keeps
    /// them, so a reconnect re-creates the queue with its current bindings; without a connection
    /// only the spec changes and the call succeeds.
    case changeBindings(id: UInt64, add: [Binding], remove: [Binding], CheckedContinuation<Void, any Error>)
    case ack(AckToken)
    case ackAll([AckToken])
    case reject(AckToken, requeue: Bool)
    /// Passive declare: does the exchange exist? (Runs on the scratch channel.)
    case checkExchange(name: String, CheckedContinuation<Bool, any Error>)
    case deleteQueue(name: String, CheckedContinuation<Void, any Error>)
    /// Passive queue declare: message and consumer counts, or a 404 error.
    case inspectQueue(name: String, CheckedContinuation<QueueStatus, any Error>)
    /// Declares a durable work queue and its bindings without consuming from it.
    case declareWorkQueue(name: String, bindings: [Binding], arguments: [String: HeaderValue], CheckedContinuation<Void, any Error>)
    /// Test hook: drop the connection as if the network failed.
    case simulateConnectionLoss
}
