import CRabbitMQ
import Glibc

/// The only owner of a rabbitmq-c connection. rabbitmq-c is not thread-safe, so an instance is
/// created, used and destroyed on one thread (the engine's I/O thread) and is deliberately not
/// `Sendable`. It is the only holder of the C handle; no C type leaves the AMQP folder (this
/// file, the arena that lends rabbitmq-c its arguments, and the conversions), so callers see
/// Swift values only.
final class AMQPConnection {
    private let state: amqp_connection_state_t
    private var isOpen = true
    private var interner = StringInterner()
    /// OpenSSL may hold decrypted records that neither `poll()` nor rabbitmq-c's buffer shows.
    let usesTLS: Bool

    /// Opens the socket (TCP or TLS), performs the AMQP handshake and logs in. Blocks for at most
    /// `connectTimeout` per step, on the calling (I/O) thread.
    init(configuration: BusConfiguration, endpoint: BusConfiguration.Endpoint) throws {
        guard let state = amqp_new_connection() else {
            throw BusError(code: .connectionFailed, message: "rabbitmq-c could not allocate a connection")
        }
        self.state = state
        self.usesTLS = configuration.tls != nil
        do {
            try open(configuration, endpoint: endpoint)
        } catch {
            amqp_destroy_connection(state)
            isOpen = false
            throw error
        }
    }

    deinit {
        if isOpen {
            amqp_destroy_connection(state)
        }
    }

    private func open(_ configuration: BusConfiguration, endpoint: BusConfiguration.Endpoint) throws {
        let socket: OpaquePointer?
        if let tls = configuration.tls {
            socket = amqp_ssl_socket_new(state)
            guard let socket else {
                throw BusError(code: .connectionFailed, message: "could not create a TLS socket")
            }
            amqp_ssl_socket_set_verify_peer(socket, tls.verifyPeer ? 1 : 0)
            amqp_ssl_socket_set_verify_hostname(socket, tls.verifyHostname ? 1 : 0)
            if let ca = tls.caCertificatePath {
                let status = amqp_ssl_socket_set_cacert(socket, ca)
                guard status == AMQP_STATUS_OK.rawValue else {
                    throw BusError(code: .invalidConfiguration, message: "cannot load CA certificate \(ca): \(Self.describe(status))")
                }
            }
            if let cert = tls.clientCertificatePath, let key = tls.clientKeyPath {
                let status = amqp_ssl_socket_set_key(socket, cert, key)
                guard status == AMQP_STATUS_OK.rawValue else {
                    throw BusError(
                        code: .invalidConfiguration,
                        message: "cannot load client certificate \(cert) / key \(key): \(Self.describe(status))")
                }
            }
        } else {
            socket = amqp_tcp_socket_new(state)
        }
        guard let socket else {
            throw BusError(code: .connectionFailed, message: "could not create a socket")
        }

        var connectTimeout = Self.makeTimeval(configuration.connectTimeout)
        let status = amqp_socket_open_noblock(socket, endpoint.host, Int32(endpoint.port), &connectTimeout)
        guard status == AMQP_STATUS_OK.rawValue else {
            throw BusError(code: .connectionFailed, message: "cannot connect to \(endpoint): \(Self.describe(status))")
        }
        _ = amqp_set_handshake_timeout(state, &connectTimeout)
        var methodTimeout = Self.makeTimeval(configuration.methodTimeout)
        _ = amqp_set_rpc_timeout(state, &methodTimeout)

        let heartbeatSeconds = Int32(clamping: configuration.heartbeat.components.seconds)
        var arena = CArena()
        let capabilities = arena.table([
            ("consumer_cancel_notify", .bool(true)),
            ("connection.blocked", .bool(true)),
            ("authentication_failure_close", .bool(true)),
            ("publisher_confirms", .bool(true)),
            ("basic.nack", .bool(true)),
        ])
        var capabilitiesValue = amqp_field_value_t()
        capabilitiesValue.kind = UInt8(AMQP_FIELD_KIND_TABLE.rawValue)
        capabilitiesValue.value.table = capabilities
        var clientProperties = arena.table(
            [("connection_name", .string(configuration.connectionName)), ("product", .string("RackBus"))],
            extra: [("capabilities", capabilitiesValue)]
        )
        let reply = rackbus_login_plain(
            state, configuration.virtualHost, Int32(AMQP_DEFAULT_MAX_CHANNELS), Int32(AMQP_DEFAULT_FRAME_SIZE),
            heartbeatSeconds, &clientProperties, configuration.user, configuration.password
        )
        do {
            try check(reply, "login to vhost '\(configuration.virtualHost)' as '\(configuration.user)'")
        } catch let error as BusError {
            throw BusError(code: .connectionFailed, message: error.message, replyCode: error.replyCode)
        }
    }

    /// The socket to wait on for readability.
    var socketDescriptor: Int32 { amqp_get_sockfd(state) }

    /// Frames that rabbitmq-c already read or queued never wake `poll()`; drain them first.
    var hasBufferedInput: Bool {
        amqp_frames_enqueued(state) != 0 || amqp_data_in_buffer(state) != 0
    }

    /// The heartbeat the broker and client agreed on, in seconds (0 = off).
    var negotiatedHeartbeat: Int { Int(amqp_get_heartbeat(state)) }

    // MARK: Channels and topology

    func openChannel(_ channel: UInt16) throws {
        try flush()
        amqp_channel_open(state, channel)
        try check(amqp_get_rpc_reply(state), channel: channel, "channel.open \(channel)")
    }

    func closeChannel(_ channel: UInt16) {
        try? flush()
        _ = amqp_channel_close(state, channel, Int32(AMQP_REPLY_SUCCESS))
    }

    func declareExchange(channel: UInt16, name: String, type: String, passive: Bool, durable: Bool, autoDelete: Bool) throws {
        try flush()
        name.withAMQPBytes { nameBytes in
            type.withAMQPBytes { typeBytes in
                _ = amqp_exchange_declare(
                    state, channel, nameBytes, typeBytes, passive ? 1 : 0, durable ? 1 : 0, autoDelete ? 1 : 0, 0,
                    amqp_empty_table)
            }
        }
        try check(amqp_get_rpc_reply(state), channel: channel, "exchange.declare \(name)")
    }

    /// Declares a queue and returns its name (the broker's name when `name` is empty).
    func declareQueue(
        channel: UInt16, name: String, passive: Bool, durable: Bool, exclusive: Bool, autoDelete: Bool,
        arguments: [String: HeaderValue]
    ) throws -> (name: String, messages: UInt32, consumers: UInt32) {
        var arena = CArena()
        let table = arena.table(arguments.map { ($0.key, $0.value) })
        let ok = amqp_queue_declare(
            state, channel, arena.bytes(name), passive ? 1 : 0, durable ? 1 : 0, exclusive ? 1 : 0, autoDelete ? 1 : 0, table)
        try check(amqp_get_rpc_reply(state), channel: channel, "queue.declare \(name.isEmpty ? "(server-named)" : name)")
        guard let ok else {
            throw BusError(code: .brokerRefused, message: "queue.declare \(name) returned no reply")
        }
        // Copy before the next call: the reply lives in memory that rabbitmq-c recycles.
        return (String(amqpBytes: ok.pointee.queue), ok.pointee.message_count, ok.pointee.consumer_count)
    }

    func deleteQueue(channel: UInt16, name: String) throws {
        try flush()
        name.withAMQPBytes { bytes in
            _ = amqp_queue_delete(state, channel, bytes, 0, 0)
        }
        try check(amqp_get_rpc_reply(state), channel: channel, "queue.delete \(name)")
    }

    func bindQueue(channel: UInt16, queue: String, exchange: String, routingKey: String) throws {
        try flush()
        var arena = CArena()
        amqp_queue_bind(state, channel, arena.bytes(queue), arena.bytes(exchange), arena.bytes(routingKey), amqp_empty_table)
        try check(amqp_get_rpc_reply(state), channel: channel, "queue.bind \(queue) to \(exchange) with '\(routingKey)'")
    }

    func unbindQueue(channel: UInt16, queue: String, exchange: String, routingKey: String) throws {
        try flush()
        var arena = CArena()
        amqp_queue_unbind(state, channel, arena.bytes(queue), arena.bytes(exchange), arena.bytes(routingKey), amqp_empty_table)
        try check(amqp_get_rpc_reply(state), channel: channel, "queue.unbind \(queue) from \(exchange) with '\(routingKey)'")
    }

    func setPrefetch(channel: UInt16, count: UInt16) throws {
        try flush()
        amqp_basic_qos(state, channel, 0, count, 0)
        try check(amqp_get_rpc_reply(state), channel: channel, "basic.qos \(count)")
    }

    func consume(channel: UInt16, queue: String, consumerTag: String, noAck: Bool, exclusive: Bool) throws -> String {
        try flush()
        var arena = CArena()
        let ok = amqp_basic_consume(
            state, channel, arena.bytes(queue), arena.bytes(consumerTag), 0, noAck ? 1 : 0, exclusive ? 1 : 0, amqp_empty_table)
        try check(amqp_get_rpc_reply(state), channel: channel, "basic.consume \(queue)")
        guard let ok else {
            throw BusError(code: .brokerRefused, message: "basic.consume \(queue) returned no reply")
        }
        return String(amqpBytes: ok.pointee.consumer_tag)
    }

    func cancel(channel: UInt16, consumerTag: String) throws {
        try flush()
        consumerTag.withAMQPBytes { bytes in
            _ = amqp_basic_cancel(state, channel, bytes)
        }
        try check(amqp_get_rpc_reply(state), channel: channel, "basic.cancel \(consumerTag)")
    }

    func enableConfirms(channel: UInt16) throws {
        try flush()
        amqp_confirm_select(state, channel)
        try check(amqp_get_rpc_reply(state), channel: channel, "confirm.select")
    }

    // MARK: Messages

    /// On plain TCP the frames are only queued: ``flush()`` sends them (see ``outbound``).
    func publish(
        channel: UInt16, exchange: String, routingKey: String, mandatory: Bool, properties: MessageProperties, body: [UInt8]
    ) throws {
        var arena = CArena()
        var cProperties = arena.properties(properties)
        if !usesTLS {
            var method = amqp_basic_publish_t(
                ticket: 0, exchange: arena.bytes(exchange), routing_key: arena.bytes(routingKey), mandatory: mandatory ? 1 : 0, immediate: 0
            )
            try queueMethod(Self.basicPublish, &method, channel: channel)
            try queueContent(body, properties: &cProperties, channel: channel)
            return
        }
        let status = body.withUnsafeBytes { raw -> Int32 in
            let bodyBytes = amqp_bytes_t(len: raw.count, bytes: UnsafeMutableRawPointer(mutating: raw.baseAddress))
            return amqp_basic_publish(
                state, channel, arena.bytes(exchange), arena.bytes(routingKey), mandatory ? 1 : 0, 0, &cProperties, bodyBytes)
        }
        guard status == AMQP_STATUS_OK.rawValue else {
            throw BusError(code: .connectionLost, message: "publish to \(exchange) '\(routingKey)' failed: \(Self.describe(status))")
        }
    }

    func ack(channel: UInt16, deliveryTag: UInt64, multiple: Bool) throws {
        if !usesTLS {
            var method = amqp_basic_ack_t(delivery_tag: deliveryTag, multiple: multiple ? 1 : 0)
            try queueMethod(Self.basicAck, &method, channel: channel)
            return
        }
        let status = amqp_basic_ack(state, channel, deliveryTag, multiple ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else {
            throw BusError(code: .connectionLost, message: "basic.ack failed: \(Self.describe(status))")
        }
    }

    func reject(channel: UInt16, deliveryTag: UInt64, requeue: Bool) throws {
        try flush()
        let status = amqp_basic_reject(state, channel, deliveryTag, requeue ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else {
            throw BusError(code: .connectionLost, message: "basic.reject failed: \(Self.describe(status))")
        }
    }

    func sendHeartbeat() throws {
        try flush()
        let status = rackbus_send_heartbeat(state)
        guard status == AMQP_STATUS_OK.rawValue else {
            throw BusError(code: .connectionLost, message: "heartbeat failed: \(Self.describe(status))")
        }
    }

    /// Politely closes the connection (best effort: the broker may already be gone).
    func close() {
        guard isOpen else { return }
        try? flush()
        _ = amqp_connection_close(state, Int32(AMQP_REPLY_SUCCESS))
        amqp_destroy_connection(state)
        isOpen = false
    }

    // MARK: Queued output

    /// Publishes and acks on plain TCP are framed here, with rabbitmq-c's own encoders, and sent
    /// together by ``flush()`` once per turn of the I/O loop: one system call, and one read for
    /// the broker, for many frames, where rabbitmq-c sends three times per publish. Every call
    /// that sends through rabbitmq-c flushes first, so frames leave in the order they were made.
    /// (TLS goes through rabbitmq-c, which encrypts.)
    private var outbound: [UInt8] = []
    /// Where rabbitmq-c encodes a method or a content header, before it is framed.
    private var scratch = [UInt8](repeating: 0, count: 4096)

    static let basicPublish: amqp_method_number_t = 0x003C_0028
    static let basicAck: amqp_method_number_t = 0x003C_0050
    private static let frameMethod: UInt8 = 1
    private static let frameHeader: UInt8 = 2
    private static let frameBody: UInt8 = 3
    private static let frameEnd: UInt8 = 0xCE
    private static let basicClass: UInt16 = 60

    var hasQueuedOutput: Bool { !outbound.isEmpty }

    /// Sends what is queued. Throws when the socket is gone.
    func flush() throws {
        guard !outbound.isEmpty else { return }
        // The buffer is kept between turns, unless a large message grew it.
        defer { outbound.removeAll(keepingCapacity: outbound.capacity <= 1 << 20) }
        let descriptor = socketDescriptor
        try outbound.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let count = send(descriptor, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                if count > 0 {
                    sent += count
                    continue
                }
                let code = errno
                if count < 0, code == EINTR { continue }
                if count < 0, code == EAGAIN || code == EWOULDBLOCK {
                    // The socket's buffer is full: wait for room, as rabbitmq-c would.
                    var descriptor = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
                    if poll(&descriptor, 1, 30_000) > 0 { continue }
                    throw BusError(code: .connectionLost, message: "the broker took nothing for 30 s")
                }
                throw BusError(code: .connectionLost, message: "send failed: \(String(cString: strerror(code))) (errno \(code))")
            }
        }
    }

    private func queueMethod<Method: BitwiseCopyable>(_ id: amqp_method_number_t, _ method: inout Method, channel: UInt16) throws {
        let length = scratch.withUnsafeMutableBytes { raw in
            amqp_encode_method(id, &method, amqp_bytes_t(len: raw.count, bytes: raw.baseAddress))
        }
        guard length >= 0 else { throw BusError(code: .encoding, message: "cannot encode an AMQP method: \(Self.describe(length))") }
        appendFrameHeader(Self.frameMethod, channel: channel, size: 4 + Int(length))
        appendBigEndian(id)
        outbound.append(contentsOf: scratch[..<Int(length)])
        outbound.append(Self.frameEnd)
    }

    private func queueContent(_ body: [UInt8], properties: inout amqp_basic_properties_t, channel: UInt16) throws {
        var length: Int32 = 0
        while true {
            length = scratch.withUnsafeMutableBytes { raw in
                amqp_encode_properties(Self.basicClass, &properties, amqp_bytes_t(len: raw.count, bytes: raw.baseAddress))
            }
            // Large headers: try again with room enough for any frame.
            guard length == AMQP_STATUS_BAD_AMQP_DATA.rawValue || length == AMQP_STATUS_TABLE_TOO_BIG.rawValue,
                scratch.count < Int(amqp_get_frame_max(state))
            else { break }
            scratch = [UInt8](repeating: 0, count: Int(amqp_get_frame_max(state)))
        }
        guard length >= 0 else { throw BusError(code: .encoding, message: "cannot encode message properties: \(Self.describe(length))") }
        appendFrameHeader(Self.frameHeader, channel: channel, size: 12 + Int(length))
        appendBigEndian(Self.basicClass)
        appendBigEndian(UInt16(0))
        appendBigEndian(UInt64(body.count))
        outbound.append(contentsOf: scratch[..<Int(length)])
        outbound.append(Self.frameEnd)
        // Frames carry at most frame_max bytes, their own 8 included.
        let chunk = max(1, Int(amqp_get_frame_max(state)) - 8)
        var start = 0
        while start < body.count {
            let end = min(body.count, start + chunk)
            appendFrameHeader(Self.frameBody, channel: channel, size: end - start)
            outbound.append(contentsOf: body[start..<end])
            outbound.append(Self.frameEnd)
            start = end
        }
    }

    private func appendFrameHeader(_ type: UInt8, channel: UInt16, size: Int) {
        outbound.append(type)
        appendBigEndian(channel)
        appendBigEndian(UInt32(size))
    }

    private func appendBigEndian<Value: FixedWidthInteger>(_ value: Value) {
        withUnsafeBytes(of: value.bigEndian) { outbound.append(contentsOf: $0) }
    }

    // MARK: Inbound

    /// Reads the next inbound event without waiting. Returns `nil` when nothing complete is
    /// buffered or readable. Throws when the connection is unusable.
    /// Whether the socket becomes readable within `milliseconds` (0: right now).
    func waitUntilReadable(milliseconds: Int32) -> Bool {
        var descriptor = pollfd(fd: socketDescriptor, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, milliseconds) > 0
    }

    func nextEvent() throws -> InboundEvent? {
        amqp_maybe_release_buffers(state)
        var envelope = amqp_envelope_t()
        var immediately = timeval(tv_sec: 0, tv_usec: 0)
        let reply = amqp_consume_message(state, &envelope, &immediately, 0)
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            defer { amqp_destroy_envelope(&envelope) }
            return .delivery(
                InboundDelivery(
                    channel: envelope.channel,
                    consumerTag: interner.string(envelope.consumer_tag),
                    deliveryTag: envelope.delivery_tag,
                    redelivered: envelope.redelivered != 0,
                    exchange: interner.string(envelope.exchange),
                    routingKey: interner.string(envelope.routing_key),
                    properties: MessageProperties(envelope.message.properties, interner: &interner),
                    body: [UInt8](amqpBytes: envelope.message.body)
                ))
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            if reply.library_error == AMQP_STATUS_TIMEOUT.rawValue {
                return nil
            }
            if reply.library_error == AMQP_STATUS_UNEXPECTED_STATE.rawValue {
                return try nextNonDeliveryEvent()
            }
            throw BusError(code: .connectionLost, message: "connection failed: \(Self.describe(reply.library_error))")
        default:
            throw BusError(code: .connectionLost, message: "unexpected reply while consuming")
        }
    }

    /// Called when the next frame is not a delivery; rabbitmq-c has put it back in its queue,
    /// so this read returns at once.
    private func nextNonDeliveryEvent() throws -> InboundEvent {
        var frame = amqp_frame_t()
        let status = amqp_simple_wait_frame(state, &frame)
        guard status == AMQP_STATUS_OK.rawValue else {
            throw BusError(code: .connectionLost, message: "connection failed: \(Self.describe(status))")
        }
        guard frame.frame_type == UInt8(AMQP_FRAME_METHOD), let decoded = frame.payload.method.decoded else {
            return .ignored
        }
        let channel = frame.channel
        switch frame.payload.method.id {
        case rackbus_basic_ack_method:
            let ack = decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            return .publishAck(channel: channel, deliveryTag: ack.delivery_tag, multiple: ack.multiple != 0)
        case rackbus_basic_nack_method:
            let nack = decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            return .publishNack(channel: channel, deliveryTag: nack.delivery_tag, multiple: nack.multiple != 0)
        case rackbus_basic_return_method:
            let returned = decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            let replyCode = Int(returned.reply_code)
            let replyText = String(amqpBytes: returned.reply_text)
            let exchange = String(amqpBytes: returned.exchange)
            let routingKey = String(amqpBytes: returned.routing_key)
            var message = amqp_message_t()
            let read = amqp_read_message(state, channel, &message, 0)
            guard read.reply_type == AMQP_RESPONSE_NORMAL else {
                throw BusError(code: .connectionLost, message: "could not read a returned message")
            }
            defer { amqp_destroy_message(&message) }
            return .returned(
                channel: channel, replyCode: replyCode, replyText: replyText, exchange: exchange, routingKey: routingKey,
                properties: MessageProperties(message.properties, interner: &interner))
        case rackbus_basic_cancel_method:
            let cancel = decoded.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
            return .consumerCancelled(channel: channel, consumerTag: String(amqpBytes: cancel.consumer_tag))
        case rackbus_channel_close_method:
            let close = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            let event = InboundEvent.channelClosed(
                channel: channel, replyCode: Int(close.reply_code), replyText: String(amqpBytes: close.reply_text))
            _ = rackbus_send_channel_close_ok(state, channel)
            return event
        case rackbus_connection_close_method:
            let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            let event = InboundEvent.connectionClosed(replyCode: Int(close.reply_code), replyText: String(amqpBytes: close.reply_text))
            _ = rackbus_send_connection_close_ok(state)
            return event
        case rackbus_connection_blocked_method:
            let blocked = decoded.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee
            return .blocked(reason: String(amqpBytes: blocked.reason))
        case rackbus_connection_unblocked_method:
            return .unblocked
        default:
            return .ignored
        }
    }

    // MARK: Errors

    /// Maps a synchronous method's reply to a ``BusError``. A channel closed by the broker is
    /// acknowledged here, so the caller only has to reopen it.
    private func check(_ reply: amqp_rpc_reply_t, channel: UInt16 = 0, _ what: @autoclosure () -> String) throws {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_NONE:
            throw BusError(code: .connectionLost, message: "\(what()): no reply")
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            // A timed-out synchronous method leaves rabbitmq-c with a force-closed socket.
            throw BusError(code: .connectionLost, message: "\(what()): \(Self.describe(reply.library_error))")
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if reply.reply.id == rackbus_channel_close_method, let decoded = reply.reply.decoded {
                let close = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                let text = String(amqpBytes: close.reply_text)
                let code = Int(close.reply_code)
                _ = rackbus_send_channel_close_ok(state, channel)
                throw BusError(code: .channelClosed, message: "\(what()): \(text)", replyCode: code)
            }
            if reply.reply.id == rackbus_connection_close_method, let decoded = reply.reply.decoded {
                let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                let text = String(amqpBytes: close.reply_text)
                let code = Int(close.reply_code)
                _ = rackbus_send_connection_close_ok(state)
                throw BusError(code: .connectionLost, message: "\(what()): \(text)", replyCode: code)
            }
            throw BusError(code: .brokerRefused, message: "\(what()): unexpected server reply")
        default:
            throw BusError(code: .connectionLost, message: "\(what()): unknown reply type")
        }
    }

    static func describe(_ status: Int32) -> String {
        guard let text = amqp_error_string2(status) else { return "status \(status)" }
        return String(cString: text)
    }

    static func makeTimeval(_ duration: Duration) -> Glibc.timeval {
        let (seconds, attoseconds) = duration.components
        return Glibc.timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}
