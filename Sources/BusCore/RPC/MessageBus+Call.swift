import Foundation

/// A reply as it came off the wire, for callers that do not know its type.
public struct RawReply: Sendable {
    public let type: String?
    public let body: [UInt8]
    public let properties: MessageProperties
}

extension MessageBus {
    /// Calls a typed RPC and returns its reply value.
    ///
    /// The request goes to the request type's exchange and routing key with `reply_to` set to
    /// this process's reply queue and a fresh `correlation_id`. It carries its deadline (the
    /// `x-deadline` header and the AMQP `expiration`), so servers skip it once the caller gave up.
    ///
    /// - Throws: ``BusError`` with code ``BusError/Code/timeout`` when no reply arrives in time,
    ///   ``BusError/Code/remote`` (with ``BusError/remote``) when the server answered with an
    ///   ErrorEvent, ``BusError/Code/connectionLost`` when the connection dropped meanwhile,
    ///   ``BusError/Code/decoding`` (with the `DecodingError` as ``BusError/underlying``) when the
    ///   reply does not decode into `Request.Reply`. The error names the call site (`file`, `line`).
    public func call<Request: BusRequest>(
        _ request: Request, timeout: Duration? = nil, file: String = #fileID, line: Int = #line
    ) async throws(BusError) -> Request.Reply {
        do {
            let body = try WireFormat.encode(request)
            let reply = try await performCall(
                exchange: name(of: Request.exchange), routingKey: request.routingKey, method: Request.method, body: body,
                type: Request.payloadType, timeout: timeout)
            return try WireFormat.decodeReply(Request.Reply.self, messageType: reply.properties.type, body: reply.body)
        } catch {
            throw error.located(at: file, line)
        }
    }

    /// Calls any routing key with a JSON body. Throws ``BusError/Code/remote`` for ErrorEvent replies.
    public func callRaw(
        exchangeNamed exchange: String, routingKey: String, body: [UInt8], type: String = "Object", timeout: Duration? = nil,
        file: String = #fileID, line: Int = #line
    ) async throws(BusError) -> RawReply {
        let reply: InboundDelivery
        do {
            reply = try await performCall(
                exchange: exchange, routingKey: routingKey, method: routingKey, body: body, type: type, timeout: timeout)
        } catch {
            throw error.located(at: file, line)
        }
        if reply.properties.type == WireFormat.errorType {
            throw BusError.remote(WireFormat.decodeErrorEvent(reply.body), file: file, line: line)
        }
        return RawReply(type: reply.properties.type, body: reply.body, properties: reply.properties)
    }

    /// Sends a request and waits for its reply. With `command`, the request asks for interim
    /// messages, which go to `command`'s handler and restart the timeout, and cancelling the
    /// calling task asks the server to stop instead of abandoning the call.
    func performCall(
        exchange: String, routingKey: String, method: String, body: [UInt8], type: String, timeout: Duration?,
        command: CommandCall? = nil
    ) async throws(BusError) -> InboundDelivery {
        let timeout = timeout ?? configuration.defaultCallTimeout
        let metrics = metrics(exchange: exchange, method: method)
        metrics.calls.increment()
        let started = ContinuousClock.now
        let pending = engine.shared.pending
        let id = pending.makeID()
        let timeoutMilliseconds = max(1, timeout.wholeMilliseconds)
        let sentAt = Date()
        var properties = outboundProperties(type: type, sentAt: sentAt)
        properties.correlationID = engine.shared.correlation.encode(id)
        properties.expiration = String(timeoutMilliseconds)
        properties.headers = [EnvelopeHeader.deadline: .int(Int64(sentAt.timeIntervalSince1970 * 1000) + timeoutMilliseconds)]
        if command != nil {
            properties.headers[CommandWire.commandHeader] = .int(1)
        }
        let message = OutboundMessage(exchange: exchange, routingKey: routingKey, properties: properties, body: body)
        let engine = self.engine
        // withTaskCancellationHandler rethrows as `any Error`; what it throws here is the
        // continuation's, which only the engine resumes, with BusErrors.
        let reply: InboundDelivery
        do {
            reply = try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<InboundDelivery, any Error>) in
                    // Register before sending: the reply can beat this function back.
                    guard
                        pending.register(
                            id: id, deadline: started + timeout, timeout: timeout, description: "\(exchange):\(routingKey)",
                            continuation: continuation, interim: command?.receive)
                    else { return }
                    if !engine.submit(.call(message, id: id)) {
                        pending.fail(id, with: BusError(code: .shutdown, message: "the bus is shut down"))
                    }
                }
            } onCancel: {
                if let command {
                    command.requestCancel()
                } else {
                    pending.cancel(id)
                }
            }
        } catch {
            let error = BusError.from(error)
            metrics.errors("\(error.code)").increment()
            throw error
        }
        metrics.latency.record(duration: ContinuousClock.now - started)
        if reply.properties.type == WireFormat.errorType {
            metrics.errors("remote").increment()
        }
        return reply
    }
}
