/// A payload that names its AMQP `type` property, as RackHD's Serializables do.
public protocol BusPayload: Sendable {
    /// `IpAddress`, `MacAddress`, `LogEvent`, …; RackHD uses `Object` for untyped payloads.
    static var payloadType: String { get }
}

extension BusPayload {
    public static var payloadType: String { "Object" }
}

/// A typed RPC: the request names its exchange, routing key and reply type, so that
/// `bus.call(request)` returns a `Reply` and `bus.serve(Request.self)` gets a `Request`.
///
/// ```swift
/// struct LookupIpLease: BusRequest {
///     typealias Reply = String          // the MAC
///     static let exchange = Exchange.dhcp
///     static let method = "methods.lookupIpLease"
///     static let payloadType = "IpAddress"
///     var value: String                  // the IP
/// }
/// ```
public protocol BusRequest: BusPayload, Codable {
    associatedtype Reply: Codable & Sendable
    static var exchange: Exchange { get }
    /// The routing key of the method, without per-instance parts: `methods.lookupIpLease`.
    static var method: String { get }
    /// The routing key this request is sent with. Node-scoped methods override it to append
    /// the node id (`methods.requestProfile.<nodeId>`).
    var routingKey: String { get }
    /// The AMQP `type` of a successful reply for `reply`. RackHD answers `Result` except where a
    /// method documents a specific type (for example `MacAddress`).
    static func replyPayloadType(for reply: Reply) -> String
}

extension BusRequest {
    public var routingKey: String { Self.method }
    public static func replyPayloadType(for reply: Reply) -> String { "Result" }
}

/// The AMQP `type` of a value: its own ``BusPayload/payloadType``, or `Object`.
func payloadType<T>(of _: T.Type) -> String {
    (T.self as? any BusPayload.Type)?.payloadType ?? "Object"
}
