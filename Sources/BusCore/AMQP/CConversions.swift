import CRabbitMQ
import Glibc

// Copies between rabbitmq-c's memory and Swift values, for AMQPConnection only.

extension String {
    /// Copies (never borrows) bytes that rabbitmq-c owns. Invalid UTF-8 is repaired, not trusted.
    init(amqpBytes bytes: amqp_bytes_t) {
        guard bytes.len > 0, let base = bytes.bytes else {
            self = ""
            return
        }
        self = String(decoding: UnsafeRawBufferPointer(start: base, count: bytes.len), as: UTF8.self)
    }

    func withAMQPBytes<R>(_ body: (amqp_bytes_t) -> R) -> R {
        var copy = self
        return copy.withUTF8 { buffer in
            body(amqp_bytes_t(len: buffer.count, bytes: UnsafeMutableRawPointer(mutating: buffer.baseAddress)))
        }
    }
}

/// Returns the same `String` for bytes it saw recently. Exchange names, routing keys, content
/// types and reply queues repeat on nearly every delivery, and a repeat then costs a compare
/// instead of an allocation, a UTF-8 validation and a free. Strings of up to 15 bytes are stored
/// inline by Swift and gain nothing, so they bypass the table.
struct StringInterner {
    private var strings: [String] = []
    private var nextSlot = 0
    static let capacity = 32

    mutating func string(_ bytes: amqp_bytes_t) -> String {
        guard bytes.len > 15, let base = bytes.bytes else { return String(amqpBytes: bytes) }
        for candidate in strings where candidate.utf8.count == bytes.len {
            let equal =
                candidate.utf8.withContiguousStorageIfAvailable { stored in
                    stored.baseAddress.map { memcmp($0, base, bytes.len) == 0 } ?? false
                } ?? false
            if equal { return candidate }
        }
        let made = String(amqpBytes: bytes)
        if strings.count < Self.capacity {
            strings.append(made)
        } else {
            strings[nextSlot] = made
            nextSlot = (nextSlot + 1) % Self.capacity
        }
        return made
    }
}

extension [UInt8] {
    init(amqpBytes bytes: amqp_bytes_t) {
        guard bytes.len > 0, let base = bytes.bytes else {
            self = []
            return
        }
        self = Array(UnsafeRawBufferPointer(start: base, count: bytes.len))
    }
}

extension MessageProperties {
    /// Copies the properties of an inbound message. Unknown header kinds are skipped, never trusted.
    /// Values that repeat from message to message go through `interner`; ids are unique, so not.
    init(_ raw: amqp_basic_properties_t, interner: inout StringInterner) {
        let flags = raw._flags
        func string(_ flag: amqp_flags_t, _ value: amqp_bytes_t) -> String? {
            flags & flag != 0 ? String(amqpBytes: value) : nil
        }
        func repeated(_ flag: amqp_flags_t, _ value: amqp_bytes_t) -> String? {
            flags & flag != 0 ? interner.string(value) : nil
        }
        self.init(
            contentType: repeated(rackbus_flag_content_type, raw.content_type),
            type: repeated(rackbus_flag_type, raw.type),
            correlationID: string(rackbus_flag_correlation_id, raw.correlation_id),
            replyTo: repeated(rackbus_flag_reply_to, raw.reply_to),
            messageID: string(rackbus_flag_message_id, raw.message_id),
            timestamp: flags & rackbus_flag_timestamp != 0 ? Int64(clamping: raw.timestamp) : nil,
            expiration: repeated(rackbus_flag_expiration, raw.expiration),
            deliveryMode: flags & rackbus_flag_delivery_mode != 0 ? raw.delivery_mode : nil,
            appID: repeated(rackbus_flag_app_id, raw.app_id),
            headers: flags & rackbus_flag_headers != 0 ? Self.headers(raw.headers) : [:]
        )
    }

    /// How deep nested arrays and tables are read: the broker's own go two levels (`x-death`);
    /// a peer's deeper nesting is cut off rather than followed without bound.
    static let maximumHeaderDepth = 8

    static func headers(_ table: amqp_table_t, depth: Int = 0) -> [String: HeaderValue] {
        guard table.num_entries > 0, let entries = table.entries else { return [:] }
        var result: [String: HeaderValue] = [:]
        for index in 0..<Int(table.num_entries) {
            let entry = entries[index]
            result[String(amqpBytes: entry.key)] = headerValue(entry.value, depth: depth)
        }
        return result
    }

    /// Nil for a kind BusCore does not read (decimal, void), and past ``maximumHeaderDepth``.
    private static func headerValue(_ value: amqp_field_value_t, depth: Int) -> HeaderValue? {
        switch UInt32(value.kind) {
        case AMQP_FIELD_KIND_UTF8.rawValue, AMQP_FIELD_KIND_BYTES.rawValue: .string(String(amqpBytes: value.value.bytes))
        case AMQP_FIELD_KIND_BOOLEAN.rawValue: .bool(value.value.boolean != 0)
        case AMQP_FIELD_KIND_I8.rawValue: .int(Int64(value.value.i8))
        case AMQP_FIELD_KIND_U8.rawValue: .int(Int64(value.value.u8))
        case AMQP_FIELD_KIND_I16.rawValue: .int(Int64(value.value.i16))
        case AMQP_FIELD_KIND_U16.rawValue: .int(Int64(value.value.u16))
        case AMQP_FIELD_KIND_I32.rawValue: .int(Int64(value.value.i32))
        case AMQP_FIELD_KIND_U32.rawValue: .int(Int64(value.value.u32))
        case AMQP_FIELD_KIND_I64.rawValue: .int(value.value.i64)
        case AMQP_FIELD_KIND_U64.rawValue, AMQP_FIELD_KIND_TIMESTAMP.rawValue: .int(Int64(clamping: value.value.u64))
        case AMQP_FIELD_KIND_F32.rawValue: .double(Double(value.value.f32))
        case AMQP_FIELD_KIND_F64.rawValue: .double(value.value.f64)
        case AMQP_FIELD_KIND_TABLE.rawValue where depth < maximumHeaderDepth: .table(headers(value.value.table, depth: depth + 1))
        case AMQP_FIELD_KIND_ARRAY.rawValue where depth < maximumHeaderDepth:
            .array(
                (0..<Int(max(0, value.value.array.num_entries))).compactMap { index in
                    value.value.array.entries.flatMap { headerValue($0[index], depth: depth + 1) }
                })
        default: nil
        }
    }
}
