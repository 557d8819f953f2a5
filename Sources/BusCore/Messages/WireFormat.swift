import Foundation

/// The JSON side of the wire, as pure functions: bodies, RackHD's `Result` envelope, ErrorEvent
/// replies, and the server's decision about an incoming request.
public enum WireFormat {
    /// The AMQP `type` of a success reply.
    public static let resultType = "Result"
    /// The AMQP `type` of an error reply.
    public static let errorType = "ErrorEvent"
    /// The AMQP `app_id` of everything RackBus sends: the sender and the envelope's version,
    /// so that later envelope changes can be told apart on the wire.
    public static let appID = "rackbus/1"

    // A coder guards its options with a lock on every call, so one shared instance becomes a
    // point of contention between threads; a fresh one per message is cheaper. Subscriptions
    // keep one each (they decode on one task at a time).

    /// `value` as JSON. Throws ``BusError/Code/encoding`` with the `EncodingError` as ``BusError/underlying``.
    public static func encode<T: Encodable>(_ value: T) throws(BusError) -> [UInt8] {
        if let direct = value as? any DirectJSONEncodable {
            var writer = JSONWriter()
            // A value JSON cannot hold is left to JSONEncoder, which says what it is.
            if (try? direct.writeJSON(into: &writer)) != nil { return writer.bytes }
        }
        do {
            return Array(try JSONEncoder().encode(value))
        } catch {
            throw BusError(code: .encoding, message: "cannot encode \(T.self): \(error)", underlying: error)
        }
    }

    /// `body` as a `T`. Throws ``BusError/Code/decoding`` with the `DecodingError` as ``BusError/underlying``.
    public static func decode<T: Decodable>(
        _ type: T.Type, from body: [UInt8], using decoder: JSONDecoder = JSONDecoder()
    ) throws(BusError) -> T {
        if let direct = T.self as? any DirectJSONDecodable.Type, let json = JSONParser.parse(body),
            let value = direct.init(json: json) as? T
        {
            return value
        }
        do {
            return try decoder.decode(T.self, from: Data(body))
        } catch {
            throw BusError(code: .decoding, message: "cannot decode \(T.self): \(describe(error))", underlying: error)
        }
    }

    /// `{"value": …}` for a reply; `{}` when the value is absent, as RackHD sends for `undefined`.
    public static func encodeResult<T: Encodable>(_ value: T) throws(BusError) -> (body: [UInt8], hasValue: Bool) {
        if let optional = value as? any OptionalProtocol, optional.isNone {
            return (Array("{}".utf8), false)
        }
        return (try encode(ResultEnvelope(value: value)), true)
    }

    /// Interprets a reply: the value of a `Result`-style body, or the remote ErrorEvent as a
    /// thrown ``BusError`` with code ``BusError/Code/remote``.
    public static func decodeReply<T: Decodable>(_ type: T.Type, messageType: String?, body: [UInt8]) throws(BusError) -> T {
        if messageType == errorType {
            throw BusError.remote(decodeErrorEvent(body))
        }
        return try decode(ResultValue<T>.self, from: body).value
    }

    /// An ErrorEvent body, or a stand-in that still carries what the sender said.
    static func decodeErrorEvent(_ body: [UInt8]) -> ErrorEvent {
        if let event = try? JSONDecoder().decode(ErrorEvent.self, from: Data(body)) {
            return event
        }
        if let object = try? JSONDecoder().decode(JSONValue.self, from: Data(body)) {
            return ErrorEvent(
                name: object["name"]?.stringValue ?? "Error",
                message: object["message"]?.stringValue ?? String(decoding: body, as: UTF8.self),
                context: object["context"] ?? .object([:]),
                status: object["status"].flatMap { if case .number(let n) = $0 { return Int(n) } else { return nil } })
        }
        return ErrorEvent(name: "Error", message: String(decoding: body.prefix(512), as: UTF8.self))
    }

    /// The routing key of a reply's copy for observers: `reply.<request key>.<reply_to>`, cut to
    /// AMQP's 255 bytes (at a character boundary).
    public static func observedReplyKey(routingKey: String, replyTo: String) -> String {
        var key = "reply.\(routingKey).\(replyTo)"
        while key.utf8.count > 255 { key.removeLast() }
        return key
    }

    /// A short, single-line description of a decoding failure for an ErrorEvent message.
    static func describe(_ error: any Error) -> String {
        guard let decoding = error as? DecodingError else { return "\(error)" }
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return keys.isEmpty ? "body" : keys.joined(separator: ".")
        }
        switch decoding {
        case .typeMismatch(let type, let context):
            return "\(path(context)): expected \(type)"
        case .valueNotFound(let type, let context):
            return "\(path(context)): missing \(type) value"
        case .keyNotFound(let key, let context):
            let parent = path(context)
            return parent == "body" ? "missing key '\(key.stringValue)'" : "\(parent): missing key '\(key.stringValue)'"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "not valid JSON" : "\(path(context)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

/// What a server does with a delivery on an RPC queue, decided from its properties alone.
public enum RequestDisposition: Equatable, Sendable {
    /// Decode it and run the handler.
    case handle
    /// The caller's deadline has passed; it no longer waits for an answer. Drop it.
    case expired
    /// Answer with this error without running the handler.
    case reject(ErrorEvent)

    /// - Parameters:
    ///   - expectedType: the request's ``BusPayload/payloadType``; `Object` accepts any type.
    ///   - exchange: the server's exchange.
    ///   - deliveredThrough: the exchange the broker says the request was published to.
    ///   - nowMilliseconds: the current time in milliseconds since 1970.
    public static func evaluate(
        properties: MessageProperties, expectedType: String, exchange: String, deliveredThrough: String, routingKey: String,
        nowMilliseconds: Int64
    ) -> RequestDisposition {
        // The broker sets the exchange, and checks the publisher's write permission on it. A
        // request that came another way, such as through the default exchange (which every RPC
        // server may write to, to reply), bypassed that check.
        guard deliveredThrough == exchange else {
            let via = deliveredThrough.isEmpty ? "the default exchange" : "'\(deliveredThrough)'"
            return .reject(.forbidden("Requests for \(exchange):\(routingKey) are published to \(exchange); this one came through \(via)."))
        }
        if let deadline = properties.headers[EnvelopeHeader.deadline]?.intValue, deadline <= nowMilliseconds {
            return .expired
        }
        if let contentType = properties.contentType, !contentType.isEmpty, !contentType.lowercased().hasPrefix(jsonContentType) {
            return .reject(.badRequest("Unsupported content type '\(contentType)' (\(exchange):\(routingKey)); send application/json."))
        }
        // RackHD refuses a request whose type names another class. A missing type, or RackHD's
        // generic `Object`, is accepted so that plain AMQP clients can call without knowing types.
        if expectedType != "Object", let type = properties.type, !type.isEmpty, type != "Object", type != expectedType {
            return .reject(.badRequest("Invalid Request Type (\(exchange):\(routingKey):\(expectedType)). Got '\(type)'."))
        }
        return .handle
    }
}

struct ResultEnvelope<Value: Encodable>: Encodable {
    var value: Value
}

/// A reply whose value is written directly is boxed without Foundation too.
extension ResultEnvelope: DirectJSONEncodable where Value: DirectJSONEncodable {
    func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        writer.key("value")
        try value.writeJSON(into: &writer)
        writer.endObject()
    }
}

/// A reply whose value is read directly is unboxed without Foundation too; anything else (no
/// value, a null one) goes through `init(from:)`.
extension ResultValue: DirectJSONDecodable where Value: DirectJSONDecodable {
    init?(json: JSONValue) {
        guard case .object(let members) = json, let member = members["value"], let value = Value(json: member) else { return nil }
        self.value = value
    }
}

/// Decodes `{"value": …}`; an absent or null value becomes `nil` for optional reply types.
struct ResultValue<Value: Decodable>: Decodable {
    var value: Value

    private enum CodingKeys: String, CodingKey {
        case value
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if let value = try container.decodeIfPresent(Value.self, forKey: .value) {
            self.value = value
        } else if let nilType = Value.self as? any ExpressibleByNilLiteral.Type, let none = nilType.init(nilLiteral: ()) as? Value {
            self.value = none
        } else {
            throw DecodingError.keyNotFound(
                CodingKeys.value, .init(codingPath: [], debugDescription: "the reply has no value"))
        }
    }
}

protocol OptionalProtocol {
    var isNone: Bool { get }
}

extension Optional: OptionalProtocol {
    var isNone: Bool { self == nil }
}
