import CRabbitMQ
import Glibc

/// Holds C copies of Swift strings and tables for the duration of one call; rabbitmq-c only
/// borrows `amqp_bytes_t`, so every pointer must outlive the call and be freed after it.
/// A bump allocator over one block (a publish usually needs a single malloc), freed on `deinit`.
struct CArena: ~Copyable {
    private var block: UnsafeMutableRawPointer
    private var capacity: Int
    private var used = 0
    private var overflow: [UnsafeMutableRawPointer] = []

    init(capacity: Int = 1024) {
        self.capacity = capacity
        self.block = malloc(capacity)!
    }

    deinit {
        Glibc.free(block)
        for pointer in overflow { Glibc.free(pointer) }
    }

    private mutating func allocate(_ count: Int) -> UnsafeMutableRawPointer {
        let aligned = (count + 15) & ~15
        if used + aligned <= capacity {
            defer { used += aligned }
            return block + used
        }
        let pointer = malloc(max(count, 1))!
        overflow.append(pointer)
        return pointer
    }

    mutating func bytes(_ string: String) -> amqp_bytes_t {
        var copy = string
        return copy.withUTF8 { buffer in
            guard let base = buffer.baseAddress, buffer.count > 0 else { return amqp_bytes_t(len: 0, bytes: nil) }
            let pointer = allocate(buffer.count)
            pointer.copyMemory(from: base, byteCount: buffer.count)
            return amqp_bytes_t(len: buffer.count, bytes: pointer)
        }
    }

    mutating func table(_ entries: [(String, HeaderValue)], extra: [(String, amqp_field_value_t)] = []) -> amqp_table_t {
        let total = entries.count + extra.count
        guard total > 0 else { return amqp_empty_table }
        let raw = allocate(MemoryLayout<amqp_table_entry_t>.stride * total)
        let pointer = raw.bindMemory(to: amqp_table_entry_t.self, capacity: total)
        for (index, (key, value)) in entries.enumerated() {
            pointer[index] = amqp_table_entry_t(key: bytes(key), value: field(value))
        }
        for (offset, (key, value)) in extra.enumerated() {
            pointer[entries.count + offset] = amqp_table_entry_t(key: bytes(key), value: value)
        }
        return amqp_table_t(num_entries: Int32(total), entries: pointer)
    }

    private mutating func array(_ values: [HeaderValue]) -> amqp_array_t {
        guard !values.isEmpty else { return amqp_array_t(num_entries: 0, entries: nil) }
        let raw = allocate(MemoryLayout<amqp_field_value_t>.stride * values.count)
        let pointer = raw.bindMemory(to: amqp_field_value_t.self, capacity: values.count)
        for (index, value) in values.enumerated() { pointer[index] = field(value) }
        return amqp_array_t(num_entries: Int32(values.count), entries: pointer)
    }

    private mutating func field(_ value: HeaderValue) -> amqp_field_value_t {
        var field = amqp_field_value_t()
        switch value {
        case .string(let text):
            field.kind = UInt8(AMQP_FIELD_KIND_UTF8.rawValue)
            field.value.bytes = bytes(text)
        case .int(let number):
            field.kind = UInt8(AMQP_FIELD_KIND_I64.rawValue)
            field.value.i64 = number
        case .bool(let flag):
            field.kind = UInt8(AMQP_FIELD_KIND_BOOLEAN.rawValue)
            field.value.boolean = flag ? 1 : 0
        case .double(let number):
            field.kind = UInt8(AMQP_FIELD_KIND_F64.rawValue)
            field.value.f64 = number
        case .array(let values):
            field.kind = UInt8(AMQP_FIELD_KIND_ARRAY.rawValue)
            field.value.array = array(values)
        case .table(let entries):
            field.kind = UInt8(AMQP_FIELD_KIND_TABLE.rawValue)
            field.value.table = table(entries.map { ($0.key, $0.value) })
        }
        return field
    }

    mutating func properties(_ properties: MessageProperties) -> amqp_basic_properties_t {
        var result = amqp_basic_properties_t()
        var flags: amqp_flags_t = 0
        if let value = properties.contentType {
            result.content_type = bytes(value)
            flags |= rackbus_flag_content_type
        }
        if let value = properties.type {
            result.type = bytes(value)
            flags |= rackbus_flag_type
        }
        if let value = properties.correlationID {
            result.correlation_id = bytes(value)
            flags |= rackbus_flag_correlation_id
        }
        if let value = properties.replyTo {
            result.reply_to = bytes(value)
            flags |= rackbus_flag_reply_to
        }
        if let value = properties.messageID {
            result.message_id = bytes(value)
            flags |= rackbus_flag_message_id
        }
        if let value = properties.timestamp {
            result.timestamp = UInt64(max(value, 0))
            flags |= rackbus_flag_timestamp
        }
        if let value = properties.expiration {
            result.expiration = bytes(value)
            flags |= rackbus_flag_expiration
        }
        if let value = properties.deliveryMode {
            result.delivery_mode = value
            flags |= rackbus_flag_delivery_mode
        }
        if let value = properties.appID {
            result.app_id = bytes(value)
            flags |= rackbus_flag_app_id
        }
        if !properties.headers.isEmpty {
            result.headers = table(properties.headers.map { ($0.key, $0.value) })
            flags |= rackbus_flag_headers
        }
        result._flags = flags
        return result
    }
}
