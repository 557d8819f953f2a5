import Foundation
import Logging
import Synchronization

extension MessageBus {
    /// Runs a command and returns its reply, following it meanwhile.
    ///
    /// Progress reports go to `onProgress`, in order, and all of them before this returns.
    /// Questions go to `onQuestion`; what it throws goes back to the server as an ErrorEvent.
    /// `idleTimeout` bounds the wait for the next message from the server, not the whole run.
    /// Cancelling the calling task asks the server to stop: the handler is cancelled, and this
    /// still returns the server's final answer (what it did so far, or an ErrorEvent with status
    /// 499), or times out.
    ///
    /// - Throws: as ``call(_:timeout:file:line:)``: only ``BusError``s. What `onQuestion` throws
    ///   goes to the server, not to the caller, so it may throw anything.
    public func perform<Command: BusCommand>(
        _ command: Command, idleTimeout: Duration? = nil, file: String = #fileID, line: Int = #line,
        onProgress: @escaping @Sendable (Command.Progress) async -> Void = { _ in },
        onQuestion: @escaping @Sendable (Command.Question) async throws -> Command.Answer = { _ in
            throw ErrorEvent.notImplemented("this caller answers no questions")
        }
    ) async throws(BusError) -> Command.Reply {
        let logger = self.logger
        do {
            let reply = try await performCommand(
                exchange: name(of: Command.exchange), routingKey: command.routingKey, method: Command.method,
                body: try WireFormat.encode(command), type: Command.payloadType, idleTimeout: idleTimeout
            ) { body in
                do {
                    await onProgress(try WireFormat.decode(Command.Progress.self, from: body))
                } catch {
                    logger.warning("dropped a progress report that does not decode", metadata: ["error": "\(error)"])
                }
            } onQuestion: { body in
                try WireFormat.encode(try await onQuestion(try WireFormat.decode(Command.Question.self, from: body)))
            }
            return try WireFormat.decodeReply(Command.Reply.self, messageType: reply.properties.type, body: reply.body)
        } catch {
            throw error.located(at: file, line)
        }
    }

    /// ``perform(_:idleTimeout:file:line:onProgress:onQuestion:)`` for any routing key, with JSON bodies as
    /// bytes (tools such as `rackbus call --follow`). Throws ``BusError/Code/remote`` for
    /// ErrorEvent replies.
    public func performRaw(
        exchangeNamed exchange: String, routingKey: String, body: [UInt8], type: String = "Object", idleTimeout: Duration? = nil,
        file: String = #fileID, line: Int = #line,
        onProgress: @escaping @Sendable ([UInt8]) async -> Void = { _ in },
        onQuestion: @escaping @Sendable ([UInt8]) async throws -> [UInt8] = { _ in
            throw ErrorEvent.notImplemented("this caller answers no questions")
        }
    ) async throws(BusError) -> RawReply {
        let reply: InboundDelivery
        do {
            reply = try await performCommand(
                exchange: exchange, routingKey: routingKey, method: routingKey, body: body, type: type, idleTimeout: idleTimeout,
                onProgress: onProgress, onQuestion: onQuestion)
        } catch {
            throw error.located(at: file, line)
        }
        if reply.properties.type == WireFormat.errorType {
            throw BusError.remote(WireFormat.decodeErrorEvent(reply.body), file: file, line: line)
        }
        return RawReply(type: reply.properties.type, body: reply.body, properties: reply.properties)
    }

    private func performCommand(
        exchange: String, routingKey: String, method: String, body: [UInt8], type: String, idleTimeout: Duration?,
        onProgress: @escaping @Sendable ([UInt8]) async -> Void,
        onQuestion: @escaping @Sendable ([UInt8]) async throws -> [UInt8]
    ) async throws(BusError) -> InboundDelivery {
        let call = CommandCall(bus: self)
        // The interim messages' task throws nothing (a question's error goes back to the server),
        // so the group need not throw; the call's outcome comes out as a Result, typed.
        let outcome = await withTaskGroup(of: Void.self) { group -> Result<InboundDelivery, BusError> in
            group.addTask {
                for await message in call.messages {
                    switch message.properties.type {
                    case CommandWire.progressType:
                        await onProgress(message.body)
                    case CommandWire.questionType:
                        do {
                            call.answer(message, type: CommandWire.answerType, body: try await onQuestion(message.body))
                        } catch {
                            let event = ErrorEvent.reply(to: error, logger: self.logger, metadata: ["amqp.routing_key": "\(routingKey)"])
                            call.answer(message, type: WireFormat.errorType, body: (try? WireFormat.encode(event)) ?? [])
                        }
                    default:
                        break
                    }
                }
            }
            do throws(BusError) {
                let reply = try await performCall(
                    exchange: exchange, routingKey: routingKey, method: method, body: body, type: type, timeout: idleTimeout, command: call)
                // Every progress report is handed over before the reply.
                call.finish()
                await group.waitForAll()
                return .success(reply)
            } catch {
                call.finish()
                // As a throwing group would on the way out: the interim messages' task stops now.
                group.cancelAll()
                return .failure(error)
            }
        }
        return try outcome.get()
    }

    /// A server for a command: like ``server(for:routingKey:concurrency:observed:file:line:handler:)``, and the
    /// handler also gets a ``CommandContext`` to report progress and ask its caller questions.
    /// A caller's cancel cancels the handler's task; if the handler then throws
    /// `CancellationError`, the caller gets an ErrorEvent with status 499, otherwise what it returns.
    ///
    /// Cancels and answers arrive on the server's own control queue, which every interim
    /// message names in `reply_to`.
    public func commandServer<Command: BusCommand>(
        for type: Command.Type, routingKey: String? = nil, concurrency: Int = 16, observed: Bool = false, file: String = #fileID,
        line: Int = #line, handler: @escaping @Sendable (Command, CommandContext<Command>) async throws -> Command.Reply
    ) async throws(BusError) -> RPCServer {
        try await attributing(to: file, line) { () async throws(BusError) in
            try await makeCommandServer(for: type, routingKey: routingKey, concurrency: concurrency, observed: observed, handler: handler)
        }
    }

    private func makeCommandServer<Command: BusCommand>(
        for type: Command.Type, routingKey: String?, concurrency: Int, observed: Bool,
        handler: @escaping @Sendable (Command, CommandContext<Command>) async throws -> Command.Reply
    ) async throws(BusError) -> RPCServer {
        var generator = SystemRandomNumberGenerator()
        let control = try await makeSubscription(
            ConsumerSpec(
                queue: .shared(
                    name: "rackbus.control.\(configuration.connectionName).\(EngineLoop.randomSuffix(using: &generator))",
                    durable: false, autoDelete: true, arguments: [:]),
                bindings: [], acknowledgement: .automatic),
            decode: { $0 })
        let sessions = CommandSessions()
        let key = routingKey ?? Command.method
        var server = try await typedServer(for: type, routingKey: key, concurrency: concurrency, observed: observed) {
            [self] command, context in
            let session = CommandSession(request: context, controlQueue: control.queueName, bus: self)
            sessions.add(session)
            defer { sessions.remove(session) }
            session.send(JSONValue.object([:]), type: CommandWire.acceptedType)
            do {
                return try await session.run { try await handler(command, CommandContext(session: session)) }
            } catch is CancellationError where session.wasCancelledByCaller {
                throw ErrorEvent(name: "CancelledError", message: "\(key) was cancelled by its caller", status: CommandWire.cancelledStatus)
            }
        }
        server.control = (control, { sessions.dispatch($0) })
        return server
    }
}

extension MessageBus {
    /// Sends `body`, in the bus's envelope, straight to `queue` through the default exchange:
    /// how the two sides of a command reach each other's queues.
    func sendDirect(
        to queue: String, type: String, correlationID: String?, replyTo: String? = nil, headers: [String: HeaderValue] = [:],
        body: [UInt8]
    ) {
        var properties = outboundProperties(type: type)
        properties.correlationID = correlationID
        properties.replyTo = replyTo
        properties.headers = headers
        engine.submit(.publish(OutboundMessage(exchange: "", routingKey: queue, properties: properties, body: body)))
    }
}

/// A command in flight on the caller's side: its interim messages, and the cancel it may owe.
final class CommandCall: Sendable {
    private struct State {
        /// From `CommandAccepted`: where cancels and answers go, and the call's correlation id.
        var control: (queue: String, correlationID: String?)?
        var cancelRequested = false
        var cancelSent = false
    }

    private let state = Mutex(State())
    let messages: AsyncStream<InboundDelivery>
    private let continuation: AsyncStream<InboundDelivery>.Continuation
    private let bus: MessageBus

    init(bus: MessageBus) {
        (messages, continuation) = AsyncStream.makeStream(of: InboundDelivery.self)
        self.bus = bus
    }

    /// An interim message (I/O thread: must not block). Acceptance is handled here, so that a
    /// cancel requested before it goes out even if the caller's tasks are already cancelled.
    @Sendable func receive(_ delivery: InboundDelivery) {
        guard delivery.properties.type == CommandWire.acceptedType else {
            continuation.yield(delivery)
            return
        }
        guard let queue = delivery.properties.replyTo, !queue.isEmpty else { return }
        let owesCancel = state.withLock { state -> Bool in
            state.control = (queue, delivery.properties.correlationID)
            return takeCancel(&state)
        }
        if owesCancel { sendCancel() }
    }

    /// The caller's task was cancelled: tell the server, now or once it has accepted.
    func requestCancel() {
        let now = state.withLock { state -> Bool in
            state.cancelRequested = true
            return takeCancel(&state)
        }
        if now { sendCancel() }
    }

    private func takeCancel(_ state: inout State) -> Bool {
        guard state.cancelRequested, !state.cancelSent, state.control != nil else { return false }
        state.cancelSent = true
        return true
    }

    private func sendCancel() {
        guard let control = state.withLock({ $0.control }) else { return }
        bus.sendDirect(to: control.queue, type: CommandWire.cancelType, correlationID: control.correlationID, body: Array("{}".utf8))
    }

    /// Answers `question` (a `CommandQuestion` delivery) with an answer or an ErrorEvent body.
    func answer(_ question: InboundDelivery, type: String, body: [UInt8]) {
        guard let queue = question.properties.replyTo, let id = question.properties.headers[CommandWire.questionHeader] else { return }
        bus.sendDirect(
            to: queue, type: type, correlationID: question.properties.correlationID, headers: [CommandWire.questionHeader: id], body: body)
    }

    func finish() {
        continuation.finish()
    }
}
