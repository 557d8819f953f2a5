import Foundation

/// A reply body as a raw server hands it back.
public struct ServedReply: Sendable {
    public var body: [UInt8]
    /// The AMQP `type` (RackHD's class name; `Result` for `{"value": …}` bodies).
    public var type: String
    /// `false` sends status 204 (no content) instead of 200.
    public var hasValue: Bool

    public init(body: [UInt8], type: String = WireFormat.resultType, hasValue: Bool = true) {
        self.body = body
        self.type = type
        self.hasValue = hasValue
    }

    /// No reply at all: the request is only acknowledged, and its caller times out (a routed
    /// server's answer for a key it no longer holds, as if nobody were bound).
    public static let unanswered = ServedReply(body: [], hasValue: false)
}

/// What a handler knows about the request besides its body.
public struct RequestContext: Sendable {
    public let exchange: String
    public let routingKey: String
    public let properties: MessageProperties
    /// Whether the sender waits for an answer (`reply_to` is set).
    public var expectsReply: Bool { properties.replyTo != nil }
    /// The caller's deadline in milliseconds since 1970, if it sent one.
    public var deadlineMilliseconds: Int64? { properties.headers[EnvelopeHeader.deadline]?.intValue }
}

extension MessageBus {
    /// Serves a typed RPC until the bus shuts down or the calling task is cancelled.
    ///
    /// Requests arrive on the shared queue `<exchange>:<routingKey>`, so replicas that serve the
    /// same method share the calls instead of each answering every one. At most `concurrency`
    /// requests run at once (the consumer's prefetch). Replies go to `reply_to` through the
    /// default exchange, echoing `correlation_id` when the caller sent one, so RackHD-style callers
    /// (a fresh reply queue per call, no correlation id) work too.
    ///
    /// A request whose deadline passed is dropped unanswered. A request with the wrong AMQP type
    /// or a body that does not decode is answered with a 400 ErrorEvent without calling `handler`.
    /// An error thrown by `handler` becomes an ErrorEvent (see ``ErrorEvent/reply(to:logger:metadata:)``):
    /// ErrorEvents pass unchanged, anything else becomes a generic 500 whose details are logged.
    ///
    /// With `observed`, a copy of every reply also goes to the events exchange under
    /// `reply.<routingKey>.<reply_to>`, so that other parties (a dashboard, an audit log,
    /// `rackbus listen on.events 'reply.#'`) can follow the answers meant for one caller.
    ///
    /// `handler` may throw anything, since what it throws goes to the caller as an ErrorEvent,
    /// never out of `serve`; `serve` itself fails only with a ``BusError``, setting up its queue.
    public func serve<Request: BusRequest>(
        _ type: Request.Type, routingKey: String? = nil, concurrency: Int = 64, observed: Bool = false, file: String = #fileID,
        line: Int = #line, handler: @escaping @Sendable (Request, RequestContext) async throws -> Request.Reply
    ) async throws(BusError) {
        try await server(
            for: type, routingKey: routingKey, concurrency: concurrency, observed: observed, file: file, line: line, handler: handler
        ).run()
    }

    /// Like ``serve(_:routingKey:concurrency:observed:file:line:handler:)``, but returns once the server's queue
    /// is bound and consuming, so that callers can start calling right away; then `run()` it.
    public func server<Request: BusRequest>(
        for type: Request.Type, routingKey: String? = nil, concurrency: Int = 64, observed: Bool = false, file: String = #fileID,
        line: Int = #line, handler: @escaping @Sendable (Request, RequestContext) async throws -> Request.Reply
    ) async throws(BusError) -> RPCServer {
        try await attributing(to: file, line) { () async throws(BusError) in
            try await typedServer(
                for: type, routingKey: routingKey ?? Request.method, concurrency: concurrency, observed: observed, handler: handler)
        }
    }

    /// A raw server that decodes requests into `Request` (a 400 when they do not decode) and
    /// encodes the handler's reply in RackHD's `Result` envelope.
    func typedServer<Request: BusRequest>(
        for type: Request.Type, routingKey key: String, concurrency: Int, observed: Bool,
        handler: @escaping @Sendable (Request, RequestContext) async throws -> Request.Reply
    ) async throws(BusError) -> RPCServer {
        let exchange = name(of: Request.exchange)
        return try await rawServer(
            exchangeNamed: exchange, routingKey: key, method: Request.method, expectedType: Request.payloadType, concurrency: concurrency,
            observed: observed
        ) {
            body, context in
            let request: Request
            do throws(BusError) {
                request = try WireFormat.decode(Request.self, from: body)
            } catch {
                throw ErrorEvent.badRequest("Invalid Request (\(exchange):\(key)): \(error.message)")
            }
            let reply = try await handler(request, context)
            let (replyBody, hasValue) = try WireFormat.encodeResult(reply)
            return ServedReply(body: replyBody, type: Request.replyPayloadType(for: reply), hasValue: hasValue)
        }
    }

    /// A server for any routing key that gets request bodies as bytes and answers with bytes
    /// (bridges, proxies, tools). It applies the same deadline, content-type and `expectedType`
    /// checks as a typed server; errors it throws become ErrorEvents.
    public func rawServer(
        exchangeNamed exchange: String, routingKey: String, method: String? = nil, expectedType: String = "Object",
        concurrency: Int = 64, observed: Bool = false, file: String = #fileID, line: Int = #line,
        handler: @escaping @Sendable ([UInt8], RequestContext) async throws -> ServedReply
    ) async throws(BusError) -> RPCServer {
        try await attributing(to: file, line) { () async throws(BusError) in
            try await rawServer(
                exchangeNamed: exchange,
                queue: .shared(name: "\(exchange):\(routingKey)", durable: false, autoDelete: true, arguments: [:]),
                bindings: [routingKey], method: method ?? routingKey, expectedType: expectedType, concurrency: concurrency,
                observed: observed, handler: handler)
        }
    }

    /// A raw server on a private queue of this process, bound to nothing at first: its routing
    /// keys come and go at run time (``RPCServer/bind(routingKeys:file:line:)``), so requests for a key reach
    /// only the process that bound it, without a queue declared or deleted per key. The handler
    /// sees the routing key in its context; ``ServedReply/unanswered`` leaves a request unanswered.
    public func routedServer(
        exchangeNamed exchange: String, queueBase: String, method: String, expectedType: String = "Object", concurrency: Int = 64,
        file: String = #fileID, line: Int = #line, handler: @escaping @Sendable ([UInt8], RequestContext) async throws -> ServedReply
    ) async throws(BusError) -> RPCServer {
        try await attributing(to: file, line) { () async throws(BusError) in
            try await rawServer(
                exchangeNamed: exchange, queue: .exclusive(base: queueBase), bindings: [], method: method, expectedType: expectedType,
                concurrency: concurrency, observed: false, handler: handler)
        }
    }

    private func rawServer(
        exchangeNamed exchange: String, queue: QueueSpec, bindings: [String], method: String, expectedType: String, concurrency: Int,
        observed: Bool, handler: @escaping @Sendable ([UInt8], RequestContext) async throws -> ServedReply
    ) async throws(BusError) -> RPCServer {
        let spec = ConsumerSpec(
            queue: queue, bindings: bindings.map { Binding(exchange: exchange, pattern: $0) },
            acknowledgement: .byConsumer(prefetch: UInt16(clamping: max(1, concurrency))))
        let requests = try await makeSubscription(spec, decode: { $0 })
        let metrics = engine.shared.metrics.served(exchange: exchange, method: method)
        logger.debug(
            "serving",
            metadata: ["amqp.exchange": "\(exchange)", "amqp.routing_key": "\(bindings)", "amqp.queue": "\(requests.queueName)"])
        let observers = observed ? name(of: .events) : nil
        return RPCServer(
            exchange: exchange, requests: requests, workers: max(1, concurrency),
            answer: { request in
                await self.answer(
                    request, exchange: exchange, expectedType: expectedType, metrics: metrics, observers: observers, handler: handler)
            }, executor: engine.shared.executor)
    }

    /// Answers one request and acknowledges it, whatever happens.
    private func answer(
        _ consumed: ConsumedDelivery, exchange: String, expectedType: String, metrics: ServedMetrics, observers: String?,
        handler: @Sendable ([UInt8], RequestContext) async throws -> ServedReply
    ) async {
        let raw = consumed.delivery
        let token = consumed.ackToken
        let context = RequestContext(exchange: exchange, routingKey: raw.routingKey, properties: raw.properties)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        switch RequestDisposition.evaluate(
            properties: raw.properties, expectedType: expectedType, exchange: exchange, deliveredThrough: raw.exchange,
            routingKey: raw.routingKey, nowMilliseconds: now)
        {
        case .expired:
            engine.shared.metrics.expiredRequests.increment()
            logger.debug("dropped a request whose caller gave up", metadata: ["amqp.routing_key": "\(raw.routingKey)"])
            engine.submit(.ack(token))
        case .reject(let event):
            metrics.failures.increment()
            reply(to: raw, acknowledging: token, error: event, observers: observers)
        case .handle:
            metrics.requests.increment()
            let started = ContinuousClock.now
            do {
                let served = try await handler(raw.body, context)
                metrics.latency.record(duration: ContinuousClock.now - started)
                var properties = replyProperties(for: raw, type: served.type)
                properties.headers[EnvelopeHeader.status] = .int(served.hasValue ? 200 : 204)
                send(reply: served.body, properties: properties, to: raw, acknowledging: token, observers: observers)
            } catch {
                metrics.failures.increment()
                let event = ErrorEvent.reply(
                    to: error, logger: logger, metadata: ["amqp.exchange": "\(exchange)", "amqp.routing_key": "\(raw.routingKey)"])
                reply(to: raw, acknowledging: token, error: event, observers: observers)
            }
        }
    }

    private func reply(to request: InboundDelivery, acknowledging token: AckToken, error: ErrorEvent, observers: String?) {
        var properties = replyProperties(for: request, type: WireFormat.errorType)
        properties.headers[EnvelopeHeader.status] = .int(Int64(error.status ?? 500))
        if request.properties.replyTo?.isEmpty ?? true {
            logger.warning(
                "refused a message that expects no reply",
                metadata: [
                    "amqp.routing_key": "\(request.routingKey)", "error": "\(error.message)",
                ])
        }
        send(reply: (try? WireFormat.encode(error)) ?? [], properties: properties, to: request, acknowledging: token, observers: observers)
    }

    /// Sends a reply to `reply_to` through the default exchange together with the request's
    /// ack; a request that expects no reply (or a reply that cannot be encoded) is only acked.
    /// With `observers` (the events exchange), a copy goes there too.
    private func send(
        reply body: [UInt8], properties: MessageProperties, to request: InboundDelivery, acknowledging token: AckToken, observers: String?
    ) {
        guard let replyTo = request.properties.replyTo, !replyTo.isEmpty, !body.isEmpty else {
            engine.submit(.ack(token))
            return
        }
        if let observers {
            let key = WireFormat.observedReplyKey(routingKey: request.routingKey, replyTo: replyTo)
            engine.submit(.publish(OutboundMessage(exchange: observers, routingKey: key, properties: properties, body: body)))
        }
        engine.submit(.reply(OutboundMessage(exchange: "", routingKey: replyTo, properties: properties, body: body), acknowledging: token))
    }

    private func replyProperties(for request: InboundDelivery, type: String) -> MessageProperties {
        var properties = outboundProperties(type: type)
        properties.correlationID = request.properties.correlationID
        return properties
    }
}

/// A consuming RPC server. ``run()`` answers requests until the bus shuts down, ``cancel()`` is
/// called, or the running task is cancelled.
public struct RPCServer: Sendable {
    /// The shared queue the server consumes (`<exchange>:<routingKey>`).
    public var queueName: String { requests.queueName }
    /// The exchange its requests come from (where run-time bindings go).
    let exchange: String
    let requests: Subscription<InboundDelivery>
    /// As many as the consumer's prefetch: a worker per request the broker may hand over.
    let workers: Int
    let answer: @Sendable (ConsumedDelivery) async -> Void
    /// Where the workers run: the bus's I/O thread, or (nil) the cooperative pool.
    var executor: (any TaskExecutor)? = nil
    /// A command server's control queue (its callers' cancels and answers), read beside the requests.
    var control: (messages: Subscription<InboundDelivery>, handle: @Sendable (InboundDelivery) -> Void)?

    /// Runs a fixed pool of workers, each taking the next request off the queue, rather than a
    /// task per request: the I/O thread resumes an idle worker directly, which saves a wake-up
    /// and a task creation on every call.
    public func run() async {
        let queue = requests.handle.queue
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                if let control {
                    group.addTask {
                        for await message in control.messages { control.handle(message.message) }
                    }
                }
                await withDiscardingTaskGroup { workers in
                    for _ in 0..<self.workers {
                        workers.addTask(executorPreference: executor) {
                            while let request = await queue.takeOne() {
                                await answer(request)
                            }
                        }
                    }
                }
                control?.messages.cancel()
            }
        } onCancel: {
            cancel()
        }
    }

    public func cancel() {
        requests.cancel()
        control?.messages.cancel()
    }

    /// Binds the server's queue to its exchange with `routingKeys`, returning once the broker
    /// routes them here (or, without a connection, once the reconnect is sure to). Bindings are
    /// counted: each bind needs its own ``unbind(routingKeys:file:line:)``, and a key stays bound while any
    /// holder has it. They survive reconnects.
    public func bind(routingKeys: [String], file: String = #fileID, line: Int = #line) async throws(BusError) {
        try await changeBindings(add: routingKeys, remove: [], file: file, line: line)
    }

    /// Gives back bindings made with ``bind(routingKeys:file:line:)``; the broker stops routing a key here
    /// when its last holder gives it back.
    public func unbind(routingKeys: [String], file: String = #fileID, line: Int = #line) async throws(BusError) {
        try await changeBindings(add: [], remove: routingKeys, file: file, line: line)
    }

    private func changeBindings(add: [String], remove: [String], file: String, line: Int) async throws(BusError) {
        let engine = requests.engine
        let id = requests.id
        let add = add.map { Binding(exchange: exchange, pattern: $0) }
        let remove = remove.map { Binding(exchange: exchange, pattern: $0) }
        do {
            try await engine.answer { .changeBindings(id: id, add: add, remove: remove, $0) }
        } catch {
            throw error.located(at: file, line)
        }
    }
}
