/// Where a dead-lettered message was first published: the exchange and routing key that the
/// broker recorded in its `x-death` header when the message left `queue`. Requeueing a dead
/// letter publishes it there again, since a work queue refuses what comes by name through the
/// default exchange (``MessageBus/workQueue(named:bindings:prefetch:arguments:as:file:line:)``).
public struct DeadLetterOrigin: Sendable, Equatable {
    public var exchange: String
    public var routingKey: String

    public init(exchange: String, routingKey: String) {
        self.exchange = exchange
        self.routingKey = routingKey
    }

    /// The origin recorded for `queue`, the newest first as the broker orders them; nil when the
    /// headers have no such entry, or it names the default exchange (the message came by name,
    /// and the work queue would refuse it again).
    public init?(headers: [String: HeaderValue], queue: String) {
        guard let deaths = headers["x-death"]?.arrayValue else { return nil }
        for death in deaths.compactMap(\.tableValue) where death["queue"]?.stringValue == queue {
            guard let exchange = death["exchange"]?.stringValue, !exchange.isEmpty,
                let routingKey = death["routing-keys"]?.arrayValue?.first?.stringValue
            else { return nil }
            self.init(exchange: exchange, routingKey: routingKey)
            return
        }
        return nil
    }
}
