import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// RackBus's connection to the broker: publish, subscribe, call and serve over the nine
/// exchanges of the conventions.
///
/// One `MessageBus` owns one AMQP connection, driven by a dedicated I/O thread. It is a
/// `Service`: nothing reaches the broker until ``run()`` runs (put it first in a `ServiceGroup`,
/// or use ``withBus(configuration:logger:_:)``). Operations issued before the broker is reachable
/// wait for it; the bus reconnects on its own, re-declares its topology and resumes every
/// subscription and RPC server. Calls in flight when a connection drops fail with a retriable
/// ``BusError/Code/connectionLost``.
///
/// Every operation fails with a ``BusError`` only, and says so (`throws(BusError)`): a caller's
/// `catch` reads `error.code` without a cast. Operations take `file` and `line` parameters that
/// default to their call site, where they report their failures (``BusError/file``). Only what
/// runs a caller's own closure, such as ``withBus(configuration:logger:_:)``, throws anything.
public final class MessageBus: Service, Sendable {
    public let configuration: BusConfiguration
    public let logger: Logger
    let engine: BusEngine
    private let nextSubscriptionID = Atomic<UInt64>(0)
    private let nextMessageID = Atomic<UInt64>(0)
    private let callMetrics = Mutex<[MethodKey: CallMetrics]>([:])
    /// The conventions' broker-side names, made once: most messages name one.
    private let conventionNames: [Exchange: String]

    /// Runs a task's code on this bus's I/O thread, between its reads and writes, as SwiftNIO
    /// runs handlers on their event loop. A task that prefers it (`withTaskExecutorPreference`)
    /// and calls or consumes through this bus is resumed on the thread that read its message,
    /// and what it sends goes out in the same turn: two thread switches fewer per round trip.
    /// RPC servers run their handlers here. Code that runs here holds up the connection, so it
    /// must be short and must not block; awaiting is fine.
    public var ioThreadExecutor: any TaskExecutor { engine.shared.executor }

    public init(configuration: BusConfiguration, logger: Logger = Logger(label: "rackbus.bus")) {
        self.configuration = configuration
        self.logger = logger
        self.engine = BusEngine(configuration: configuration, logger: logger)
        self.conventionNames = Dictionary(uniqueKeysWithValues: Exchange.conventions.map { ($0, configuration.name(of: $0)) })
    }

    /// Drives the connection until graceful shutdown or cancellation, then closes it cleanly.
    /// Throws ``BusError/Code/resourceExhausted`` at once when the process has no file
    /// descriptor left for the bus; operations issued meanwhile fail with ``BusError/Code/shutdown``.
    public func run() async throws(BusError) {
        do {
            try engine.start()
        } catch {
            shutdown()
            await engine.stop()
            throw error
        }
        await withTaskCancellationHandler {
            await cancelWhenGracefulShutdown {
                await self.engine.waitUntilFinished()
            }
        } onCancel: {
            self.engine.shared.inbox.stop()
        }
        await engine.stop()
    }

    private func cancelWhenGracefulShutdown(_ body: @Sendable @escaping () async -> Void) async {
        await withGracefulShutdownHandler {
            await body()
        } onGracefulShutdown: {
            self.shutdown()
        }
    }

    /// Stops the bus: intake closes, waiting calls fail with ``BusError/Code/shutdown``,
    /// subscriptions end, and ``run()`` returns once the connection is closed.
    public func shutdown() {
        engine.shared.inbox.stop()
        engine.shared.releaseWaiters()
    }

    /// Runs `body` with a bus that is connected for its duration and shut down afterwards.
    /// Throws what `body` throws (anything), or the ``BusError`` of ``run()``.
    public static func withBus<Result: Sendable>(
        configuration: BusConfiguration, logger: Logger = Logger(label: "rackbus.bus"),
        _ body: @Sendable (MessageBus) async throws -> Result
    ) async throws -> Result {
        let bus = MessageBus(configuration: configuration, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await bus.run() }
            do {
                let result = try await body(bus)
                bus.shutdown()
                try await group.waitForAll()
                return result
            } catch {
                bus.shutdown()
                try? await group.waitForAll()
                throw error
            }
        }
    }

    /// Whether the connection is up right now.
    public var isConnected: Bool { engine.shared.isConnected }

    /// The broker address (of ``BusConfiguration/endpoints``) this bus is connected to, while connected.
    public var connectedEndpoint: BusConfiguration.Endpoint? { isConnected ? engine.shared.connectedEndpoint : nil }

    /// Whether ``shutdown()`` has been called (or the bus has stopped).
    var isShutDown: Bool { engine.shared.inbox.isStopping }

    /// Waits until the connection is up, or throws ``BusError/Code/timeout`` (each caller after
    /// its own timeout) or ``BusError/Code/cancelled``.
    public func waitUntilConnected(timeout: Duration = .seconds(30), file: String = #fileID, line: Int = #line) async throws(BusError) {
        if isConnected { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.engine.shared.waitUntilConnected() }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            // Cancelling the group ends this caller's own waiter, and no one else's.
            group.cancelAll()
        }
        if isConnected { return }
        if Task.isCancelled {
            throw BusError(code: .cancelled, message: "stopped waiting for the broker connection", file: file, line: line)
        }
        throw BusError(
            code: .timeout, message: "no broker connection within \(timeout) (\(configuration.redactedURL))", file: file, line: line)
    }

    /// The broker-side name of a convention exchange (`on.events`).
    public func name(of exchange: Exchange) -> String {
        conventionNames[exchange] ?? configuration.name(of: exchange)
    }

    // MARK: Publishing

    /// Publishes `value` as JSON. The AMQP `type` is `type`, else the value's
    /// ``BusPayload/payloadType``, else `Object`. Returns once the message is queued for the
    /// connection; while the broker is unreachable messages wait (up to
    /// ``BusConfiguration/maxBufferedOperations``). Use ``publishConfirmed(_:to:routingKey:type:persistent:mandatory:file:line:)``
    /// when the caller must know the broker took it.
    ///
    /// - Throws: ``BusError/Code/encoding`` when `value` does not encode, ``BusError/Code/shutdown``
    ///   once the bus is shut down.
    public func publish<T: Encodable & Sendable>(
        _ value: T, to exchange: Exchange, routingKey: String, type: String? = nil, persistent: Bool = false,
        file: String = #fileID, line: Int = #line
    ) async throws(BusError) {
        try await publish(
            value, toExchangeNamed: name(of: exchange), routingKey: routingKey, type: type, persistent: persistent, file: file, line: line)
    }

    /// ``publish(_:to:routingKey:type:persistent:file:line:)`` to an exchange given by its broker-side name.
    public func publish<T: Encodable & Sendable>(
        _ value: T, toExchangeNamed exchange: String, routingKey: String, type: String? = nil, persistent: Bool = false,
        file: String = #fileID, line: Int = #line
    ) async throws(BusError) {
        let body = try encode(value, file: file, line: line)
        try await publishRaw(
            body: body, toExchangeNamed: exchange, routingKey: routingKey,
            properties: outboundProperties(type: type ?? payloadType(of: T.self), persistent: persistent), file: file, line: line)
    }

    /// ``publish(_:to:routingKey:type:persistent:file:line:)`` for code that must not suspend (a
    /// callback on another thread): it does not wait for room in the I/O thread's queue, as the
    /// confirmed publishes with `onSettled` do not. Throws ``BusError/Code/shutdown`` once the bus
    /// is shut down.
    public func publishWithoutWaiting<T: Encodable & Sendable>(
        _ value: T, to exchange: Exchange, routingKey: String, type: String? = nil, persistent: Bool = false,
        file: String = #fileID, line: Int = #line
    ) throws(BusError) {
        try submitPublish(
            body: try encode(value, file: file, line: line), toExchangeNamed: name(of: exchange), routingKey: routingKey,
            properties: outboundProperties(type: type ?? payloadType(of: T.self), persistent: persistent), file: file, line: line)
    }

    /// Publishes a body as-is with the given properties.
    public func publishRaw(
        body: [UInt8], toExchangeNamed exchange: String, routingKey: String, properties: MessageProperties, file: String = #fileID,
        line: Int = #line
    ) async throws(BusError) {
        await engine.shared.inbox.waitForRoom()
        try submitPublish(body: body, toExchangeNamed: exchange, routingKey: routingKey, properties: properties, file: file, line: line)
    }

    /// Hands a publish to the I/O thread without waiting for room there.
    private func submitPublish(
        body: [UInt8], toExchangeNamed exchange: String, routingKey: String, properties: MessageProperties, file: String, line: Int
    ) throws(BusError) {
        let message = OutboundMessage(exchange: exchange, routingKey: routingKey, properties: properties, body: body)
        guard engine.submit(.publish(message)) else {
            throw BusError(code: .shutdown, message: "the bus is shut down", file: file, line: line)
        }
    }

    /// Publishes and waits for the broker's confirm. With `mandatory`, a message that no queue
    /// receives fails with ``BusError/Code/unroutable``.
    public func publishConfirmed<T: Encodable & Sendable>(
        _ value: T, to exchange: Exchange, routingKey: String, type: String? = nil, persistent: Bool = false, mandatory: Bool = false,
        file: String = #fileID, line: Int = #line
    ) async throws(BusError) {
        let body = try encode(value, file: file, line: line)
        try await publishRawConfirmed(
            body: body, toExchangeNamed: name(of: exchange), routingKey: routingKey, type: type ?? payloadType(of: T.self),
            persistent: persistent, mandatory: mandatory, file: file, line: line)
    }

    /// ``publishConfirmed(_:to:routingKey:type:persistent:mandatory:file:line:)`` for a body as-is,
    /// with `headers` besides the envelope's.
    public func publishRawConfirmed(
        body: [UInt8], toExchangeNamed exchange: String, routingKey: String, type: String, persistent: Bool = false,
        mandatory: Bool = false, headers: [String: HeaderValue] = [:], file: String = #fileID, line: Int = #line
    ) async throws(BusError) {
        let message = confirmedMessage(
            body: body, exchange: exchange, routingKey: routingKey, type: type, persistent: persistent, mandatory: mandatory,
            headers: headers)
        try await attributing(to: file, line) { () async throws(BusError) in
            try await engine.answer { .publishConfirmed(message, .caller($0)) }
        }
    }

    /// ``publishRawConfirmed(body:toExchangeNamed:routingKey:type:persistent:mandatory:headers:file:line:)``
    /// without waiting for the confirm: `onSettled` hears how it ended, on the bus's I/O thread,
    /// so it must be short and must not block. With `acknowledging`, that work-queue delivery is
    /// acknowledged once the broker confirms the message, and handed back to its queue when the
    /// broker refuses it or the message cannot be sent. This is how a consumer forwards work: its
    /// input stays unacknowledged until its output is safe, and no task waits, nor is woken, per
    /// message.
    public func publishRawConfirmed<Input>(
        body: [UInt8], toExchangeNamed exchange: String, routingKey: String, type: String, persistent: Bool = false,
        mandatory: Bool = false, headers: [String: HeaderValue] = [:], acknowledging delivery: Delivery<Input>?,
        onSettled: @escaping @Sendable (Result<Void, BusError>) -> Void
    ) {
        let message = confirmedMessage(
            body: body, exchange: exchange, routingKey: routingKey, type: type, persistent: persistent, mandatory: mandatory,
            headers: headers)
        if !engine.submit(.publishConfirmed(message, .callback(onSettled, settling: delivery?.acknowledger?.token))) {
            onSettled(.failure(BusError(code: .shutdown, message: "the bus is shut down")))
        }
    }

    /// The same without a delivery to settle.
    public func publishRawConfirmed(
        body: [UInt8], toExchangeNamed exchange: String, routingKey: String, type: String, persistent: Bool = false,
        mandatory: Bool = false, headers: [String: HeaderValue] = [:], onSettled: @escaping @Sendable (Result<Void, BusError>) -> Void
    ) {
        publishRawConfirmed(
            body: body, toExchangeNamed: exchange, routingKey: routingKey, type: type, persistent: persistent, mandatory: mandatory,
            headers: headers, acknowledging: Delivery<[UInt8]>?.none, onSettled: onSettled)
    }

    /// A publish to be confirmed. Every publish carries a message id; it also ties a basic.return
    /// to its confirm.
    private func confirmedMessage(
        body: [UInt8], exchange: String, routingKey: String, type: String, persistent: Bool, mandatory: Bool, headers: [String: HeaderValue]
    ) -> OutboundMessage {
        var properties = outboundProperties(type: type, persistent: persistent)
        properties.headers = headers
        return OutboundMessage(exchange: exchange, routingKey: routingKey, properties: properties, body: body, mandatory: mandatory)
    }

    /// The envelope of every message: JSON, its type, a message id, the sent time and the version.
    func outboundProperties(type: String, persistent: Bool = false, sentAt: Date = Date()) -> MessageProperties {
        MessageProperties(
            contentType: jsonContentType, type: type, messageID: makeMessageID(),
            timestamp: Int64(sentAt.timeIntervalSince1970), deliveryMode: persistent ? 2 : 1, appID: WireFormat.appID)
    }

    func makeMessageID() -> String {
        let number = nextMessageID.wrappingAdd(1, ordering: .relaxed).newValue
        return "\(engine.shared.correlation.prefix)-\(number)"
    }

    // MARK: Subscribing

    /// A broadcast subscription: a private queue bound with `patterns` (topic wildcards `*` and
    /// `#`), so every subscriber receives its own copy, as in RackHD. Deliveries are acknowledged
    /// as the consumer takes them; at most ``BusConfiguration/broadcastWindow`` wait in memory.
    public func subscribe<T: Decodable & Sendable>(
        to exchange: Exchange, patterns: [String], as type: T.Type = T.self, file: String = #fileID, line: Int = #line
    ) async throws(BusError) -> Subscription<T> {
        try await subscribe(toExchangeNamed: name(of: exchange), patterns: patterns, as: type, file: file, line: line)
    }

    /// ``subscribe(to:patterns:as:file:line:)`` for an exchange given by its broker-side name.
    public func subscribe<T: Decodable & Sendable>(
        toExchangeNamed exchange: String, patterns: [String], as type: T.Type = T.self, file: String = #fileID, line: Int = #line
    ) async throws(BusError) -> Subscription<T> {
        try await attributing(to: file, line) { () async throws(BusError) in
            try await makeSubscription(
                broadcastSpec(base: "\(exchange):\(patterns.joined(separator: ","))", exchange: exchange, patterns: patterns),
                decode: Self.jsonDecoding(T.self))
        }
    }

    /// Like ``subscribe(to:patterns:as:file:line:)`` but yields bodies undecoded (`Delivery<[UInt8]>`).
    public func subscribeRaw(
        toExchangeNamed exchange: String, patterns: [String], file: String = #fileID, line: Int = #line
    ) async throws(BusError) -> Subscription<[UInt8]> {
        try await attributing(to: file, line) { () async throws(BusError) in
            try await makeSubscription(
                broadcastSpec(base: "\(exchange):\(patterns.joined(separator: ","))", exchange: exchange, patterns: patterns),
                decode: { $0.body })
        }
    }

    /// The dead-letter queue of quorum work queue `queue`, undecoded, with at most `prefetch`
    /// deliveries outstanding: for an operator to read (and hand back) or requeue. Throws
    /// ``BusError/Code/channelClosed`` with reply code 404 when `queue` has none.
    public func deadLetters(
        of queue: String, prefetch: Int = 100, file: String = #fileID, line: Int = #line
    ) async throws(BusError) -> Subscription<[UInt8]> {
        let name = BusConfiguration.deadLetterQueue(of: queue)
        _ = try await inspectQueue(named: name, file: file, line: line)
        let spec = ConsumerSpec(
            queue: .shared(name: name, durable: true, autoDelete: false, arguments: ["x-queue-type": .string("quorum")]), bindings: [],
            acknowledgement: .byConsumer(prefetch: UInt16(clamping: max(1, prefetch))))
        return try await attributing(to: file, line) { () async throws(BusError) in
            try await makeSubscription(spec, decode: { $0.body })
        }
    }

    /// A private queue for one broadcast subscriber, with the configured window.
    func broadcastSpec(base: String, exchange: String, patterns: [String]) -> ConsumerSpec {
        let window = configuration.broadcastWindow
        return ConsumerSpec(
            queue: .exclusive(base: base), bindings: patterns.map { Binding(exchange: exchange, pattern: $0) },
            acknowledgement: window > 0 ? .onTake(window: UInt16(clamping: window)) : .automatic)
    }

    /// A work queue: the named, durable queue `queue`, shared by every replica that consumes it,
    /// so each message goes to one of them. Deliveries must be acknowledged
    /// (``Delivery/ack()``); at most `prefetch` are unacknowledged per consumer. `arguments` are
    /// the queue's `x-` arguments (for example `x-single-active-consumer`); every declarer of the
    /// queue must pass the same ones, or the broker refuses the declare.
    ///
    /// A message that the broker did not route through one of `bindings`' exchanges is refused
    /// (rejected without requeue, so a quorum queue dead-letters it) and logged: any user that may
    /// write to the default exchange (every RPC server's, to reply) can put a message into a queue
    /// by name, and only the delivery's exchange, which the broker sets, tells it apart. A queue
    /// without bindings is fed by name on purpose and takes what comes.
    public func workQueue<T: Decodable & Sendable>(
        named queue: String, bindings: [(exchange: Exchange, pattern: String)], prefetch: Int = 16, arguments: [String: HeaderValue] = [:],
        as type: T.Type = T.self, file: String = #fileID, line: Int = #line
    ) async throws(BusError) -> Subscription<T> {
        try await attributing(to: file, line) { () async throws(BusError) in
            try await declareDeadLetterQueue(for: queue)
            let spec = ConsumerSpec(
                queue: .shared(
                    name: queue, durable: true, autoDelete: false,
                    arguments: configuration.workQueueArguments(for: queue, adding: arguments)),
                bindings: bindings.map { Binding(exchange: name(of: $0.exchange), pattern: $0.pattern) },
                acknowledgement: .byConsumer(prefetch: UInt16(clamping: max(1, prefetch))))
            let decode = Self.jsonDecoding(T.self)
            let exchanges = Set(spec.bindings.map(\.exchange))
            return try await makeSubscription(spec) { delivery in
                guard exchanges.isEmpty || exchanges.contains(delivery.exchange) else { throw NotThroughBoundExchange(bound: exchanges) }
                return try decode(delivery)
            }
        }
    }

    /// Decodes bodies with a decoder of the subscription's own (see ``WireFormat/encode(_:)``).
    /// The subscription's decoder stays untyped: a filter may throw ``NotForThisSubscriber``.
    static func jsonDecoding<T: Decodable & Sendable>(_ type: T.Type) -> @Sendable (InboundDelivery) throws -> T {
        let decoder = SubscriptionDecoder()
        return { try WireFormat.decode(T.self, from: $0.body, using: decoder.decoder) }
    }

    func makeSubscription<T: Sendable>(
        _ spec: ConsumerSpec, decode: @escaping @Sendable (InboundDelivery) throws -> T
    ) async throws(BusError) -> Subscription<T> {
        let id = nextSubscriptionID.wrappingAdd(1, ordering: .relaxed).newValue
        let engine = self.engine
        let queue = DeliveryQueue { engine.submit(.unsubscribe(id: id)) }
        let handle = SubscriptionHandle(queue: queue)
        let queueName = try await engine.answer { .subscribe(id: id, spec, queue, ready: $0) }
        return Subscription(
            queueName: queueName, id: id, handle: handle, engine: engine, acknowledgement: spec.acknowledgement, decode: decode)
    }

    // MARK: Administration

    /// Whether an exchange exists (a passive declare, which never changes anything).
    public func exchangeExists(named name: String, file: String = #fileID, line: Int = #line) async throws(BusError) -> Bool {
        try await attributing(to: file, line) { () async throws(BusError) in
            try await engine.answer { .checkExchange(name: name, $0) }
        }
    }

    /// Deletes a queue (for example a work queue that is no longer used).
    public func deleteQueue(named name: String, file: String = #fileID, line: Int = #line) async throws(BusError) {
        try await attributing(to: file, line) { () async throws(BusError) in
            try await engine.answer { .deleteQueue(name: name, $0) }
        }
    }

    /// Declares the durable work queue `queue` with its bindings, without consuming from it, so
    /// that work published for a service that has not started yet waits for it instead of being
    /// dropped as unroutable. Idempotent; the flags match ``workQueue(named:bindings:prefetch:arguments:as:file:line:)``.
    public func declareWorkQueue(
        named queue: String, bindings: [(exchange: Exchange, pattern: String)], arguments: [String: HeaderValue] = [:],
        file: String = #fileID, line: Int = #line
    ) async throws(BusError) {
        try await attributing(to: file, line) { () async throws(BusError) in
            try await declareDeadLetterQueue(for: queue)
            let arguments = configuration.workQueueArguments(for: queue, adding: arguments)
            try await declareQueue(
                named: queue, bindings: bindings.map { Binding(exchange: name(of: $0.exchange), pattern: $0.pattern) }, arguments: arguments
            )
        }
    }

    /// A quorum work queue's dead-letter queue, a quorum queue too, declared before the queue
    /// that sends to it so that no poison message is dropped.
    private func declareDeadLetterQueue(for queue: String) async throws(BusError) {
        guard configuration.workQueueType == .quorum else { return }
        try await declareQueue(
            named: BusConfiguration.deadLetterQueue(of: queue), bindings: [], arguments: ["x-queue-type": .string("quorum")])
    }

    private func declareQueue(named queue: String, bindings: [Binding], arguments: [String: HeaderValue]) async throws(BusError) {
        try await engine.answer { .declareWorkQueue(name: queue, bindings: bindings, arguments: arguments, $0) }
    }

    /// A queue's ready-message and consumer counts (a passive declare). Throws
    /// ``BusError/Code/channelClosed`` with reply code 404 when the queue does not exist.
    public func inspectQueue(named name: String, file: String = #fileID, line: Int = #line) async throws(BusError) -> QueueStatus {
        try await attributing(to: file, line) { () async throws(BusError) in
            try await engine.answer { .inspectQueue(name: name, $0) }
        }
    }

    /// Drops the connection as a network failure would, to exercise recovery. For tests and drills.
    public func simulateConnectionLoss() {
        engine.submit(.simulateConnectionLoss)
    }

    // MARK: Metrics cache

    func metrics(exchange: String, method: String) -> CallMetrics {
        let key = MethodKey(exchange: exchange, method: method)
        return callMetrics.withLock { cache in
            if let cached = cache[key] { return cached }
            let created = engine.shared.metrics.call(exchange: exchange, method: method)
            cache[key] = created
            return created
        }
    }
}

extension MessageBus {
    // MARK: Errors

    /// `value` as JSON; an encoding failure is reported at the operation's call site.
    func encode<T: Encodable>(_ value: T, file: String, line: Int) throws(BusError) -> [UInt8] {
        do {
            return try WireFormat.encode(value)
        } catch {
            throw error.located(at: file, line)
        }
    }

    /// Runs `body` and reports its failure at `file`:`line`, an operation's call site.
    func attributing<T>(
        to file: String, _ line: Int, _ body: () async throws(BusError) -> T
    ) async throws(BusError) -> T {
        do {
            return try await body()
        } catch {
            throw error.located(at: file, line)
        }
    }
}

/// A subscription's JSON decoder: used by one iterating task at a time.
final class SubscriptionDecoder: Sendable {
    let decoder = JSONDecoder()
}

struct MethodKey: Hashable {
    var exchange: String
    var method: String
}

/// What the broker says about a queue.
public struct QueueStatus: Sendable, Equatable {
    public let name: String
    /// Messages ready for delivery (not counting unacknowledged ones).
    public let messages: Int
    public let consumers: Int
}
