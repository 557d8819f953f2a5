/// The AMQP basic properties BusCore reads and writes, as plain Swift values.
public struct MessageProperties: Sendable, Equatable {
    public var contentType: String?
    /// The payload's class name in RackHD's sense: `Result`, `ErrorEvent`, `IpAddress`, `Object`, …
    public var type: String?
    public var correlationID: String?
    public var replyTo: String?
    public var messageID: String?
    /// Seconds since 1970 (AMQP timestamps have whole-second resolution).
    public var timestamp: Int64?
    /// Per-message TTL in milliseconds, as a decimal string (the broker drops it when it expires).
    public var expiration: String?
    /// 1 transient, 2 persistent.
    public var deliveryMode: UInt8?
    public var appID: String?
    public var headers: [String: HeaderValue]

    public init(
        contentType: String? = nil, type: String? = nil, correlationID: String? = nil, replyTo: String? = nil,
        messageID: String? = nil, timestamp: Int64? = nil, expiration: String? = nil, deliveryMode: UInt8? = nil,
        appID: String? = nil, headers: [String: HeaderValue] = [:]
    ) {
        self.contentType = contentType
        self.type = type
        self.correlationID = correlationID
        self.replyTo = replyTo
        self.messageID = messageID
        self.timestamp = timestamp
        self.expiration = expiration
        self.deliveryMode = deliveryMode
        self.appID = appID
        self.headers = headers
    }
}

/// A header table value. AMQP has more kinds; every numeric kind BusCore reads is widened into
/// these, and nested arrays and tables are read whole (the broker's `x-death` is an array of
/// tables).
public indirect enum HeaderValue: Sendable, Hashable {
    case string(String)
    case int(Int64)
    case bool(Bool)
    case double(Double)
    case array([HeaderValue])
    case table([String: HeaderValue])

    public var intValue: Int64? {
        switch self {
        case .int(let value): return value
        case .double(let value): return Int64(exactly: value.rounded())
        case .string(let value): return Int64(value)
        case .bool, .array, .table: return nil
        }
    }

    public var stringValue: String? {
        switch self {
        case .string(let value): return value
        case .int(let value): return String(value)
        case .double(let value): return String(value)
        case .bool(let value): return String(value)
        case .array, .table: return nil
        }
    }

    public var arrayValue: [HeaderValue]? {
        if case .array(let values) = self { return values }
        return nil
    }

    public var tableValue: [String: HeaderValue]? {
        if case .table(let entries) = self { return entries }
        return nil
    }
}

/// Header names of the RackBus envelope. RackHD clients ignore unknown headers.
public enum EnvelopeHeader {
    /// Absolute deadline of a request, milliseconds since 1970. Servers drop requests past it.
    public static let deadline = "x-deadline"
    /// HTTP-like status of a reply: 200 with a value, 204 without one, the ErrorEvent's status on failure.
    public static let status = "x-status"
}

/// The content type of every body BusCore sends.
public let jsonContentType = "application/json"
