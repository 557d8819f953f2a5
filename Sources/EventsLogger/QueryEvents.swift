import BusCore

/// `methods.queryEvents` on `on.events`: what the journal holds, optionally for one node, one
/// kind and a time window. Replies with the most recent `limit` matching entries, oldest first.
///
/// Why `on.events`: the conventions put extra RPCs under `methods.` on the exchange they concern,
/// and this one concerns events. Every `#` listener on `on.events` also sees the request, so
/// listeners must ignore routing keys that start with `methods.` (no event starts with it); the
/// events logger does.
///
/// Every field is optional on the wire (RackHD-style callers may send `{}`). A `limit` of zero or
/// less, an unknown `kind`, or `since` after `until` is answered with a 400 ErrorEvent; a `limit`
/// above 10,000 is lowered to 10,000.
public struct QueryEvents: BusRequest, Equatable {
    public typealias Reply = [JournalEntry]
    public static let exchange = Exchange.events
    public static let method = "methods.queryEvents"
    public static let defaultLimit = 100
    public static let maximumLimit = 10_000

    public var nodeId: String?
    /// An ``EventKind`` raw value (`tftp`, `graph`, `log`, …). Overrides `includeLogs`.
    public var kind: String?
    /// Epoch milliseconds, inclusive.
    public var since: Int64?
    /// Epoch milliseconds, exclusive.
    public var until: Int64?
    /// Default 100, at most 10,000.
    public var limit: Int?
    /// Whether log records are included when `kind` is not given (default true).
    public var includeLogs: Bool?

    public init(
        nodeId: String? = nil, kind: EventKind? = nil, since: Int64? = nil, until: Int64? = nil, limit: Int? = nil, includeLogs: Bool? = nil
    ) {
        self.nodeId = nodeId
        self.kind = kind?.rawValue
        self.since = since
        self.until = until
        self.limit = limit
        self.includeLogs = includeLogs
    }

    /// The filter this request asks for, or the 400 ErrorEvent that answers it.
    func journalQuery() throws(ErrorEvent) -> JournalQuery {
        let limit = self.limit ?? Self.defaultLimit
        guard limit > 0 else {
            throw ErrorEvent.badRequest("limit must be positive (got \(limit))", context: ["limit": .number(Double(limit))])
        }
        var kindFilter: EventKind?
        if let kind {
            guard let known = EventKind(rawValue: kind) else {
                let known = EventKind.allCases.map(\.rawValue).joined(separator: ", ")
                throw ErrorEvent.badRequest("unknown kind '\(kind)' (one of \(known))", context: ["kind": .string(kind)])
            }
            kindFilter = known
        }
        if let since, let until, since > until {
            throw ErrorEvent.badRequest("since (\(since)) is after until (\(until))")
        }
        return JournalQuery(
            nodeId: nodeId, kind: kindFilter, includeLogs: includeLogs ?? true, since: since, until: until,
            limit: min(limit, Self.maximumLimit))
    }
}

/// One journaled message.
public struct JournalEntry: Codable, Sendable, Equatable {
    /// Increases with arrival.
    public var id: Int64
    /// Epoch milliseconds: the message's own time when it has one (a log record's `timestamp`,
    /// an external event's `createdAt`), else when it was received.
    public var time: Int64
    /// The broker-side exchange name (`on.events`, `on.logging`).
    public var exchange: String
    public var routingKey: String
    public var kind: EventKind
    public var nodeId: String?
    public var body: JSONValue

    public init(id: Int64, time: Int64, exchange: String, routingKey: String, kind: EventKind, nodeId: String?, body: JSONValue) {
        self.id = id
        self.time = time
        self.exchange = exchange
        self.routingKey = routingKey
        self.kind = kind
        self.nodeId = nodeId
        self.body = body
    }
}

/// A validated query.
struct JournalQuery: Sendable, Equatable {
    var nodeId: String?
    var kind: EventKind?
    var includeLogs: Bool
    var since: Int64?
    var until: Int64?
    var limit: Int
}
