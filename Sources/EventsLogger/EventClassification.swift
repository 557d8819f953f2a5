import BusCore

/// What a journal entry is about, from the first word of its routing key (`tftp.success.…` is
/// `tftp`); every log record is `log`.
public enum EventKind: String, Sendable, Codable, CaseIterable {
    case tftp, dhcp, http, graph, task, sku, node, log, other
}

/// Reading kinds and node ids out of routing keys and bodies, per the conventions. Pure
/// functions, no I/O.
public enum EventClassification {
    /// The kind of an `on.events` message. RackHD v2 announces finished tasks as
    /// `<domain>.task.finished`, so that shape is a `task` too.
    public static func kind(ofEventRoutingKey routingKey: String) -> EventKind {
        let words = routingKey.split(separator: ".", omittingEmptySubsequences: false)
        guard let first = words.first else { return .other }
        if let kind = EventKind(rawValue: String(first)) { return kind }
        if words.count == 3, words[1] == "task", words[2] == "finished" { return .task }
        return .other
    }

    /// The node an `on.events` message is about, or nil.
    ///
    /// Node-scoped keys carry it as their last word (`tftp.success.<node>`, `tftp.failure.<node>`,
    /// `http.response.<node>`, `dhcp.bind.success.<node>`, `sku.assigned.<node>`); on-tftp and
    /// on-http send `external` for a client they do not know, which is no node. Graph and task
    /// keys name a graph or task, so the node comes from the body's `nodeId` when it has one.
    /// `node.<action>.…` external events carry `nodeId` in the body, else their last word; any
    /// other event is attributed by its body's `nodeId` when it has one.
    public static func nodeId(ofEventRoutingKey routingKey: String, body: JSONValue?) -> String? {
        let words = routingKey.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let bodyNodeId = nonEmpty(body?["nodeId"]?.stringValue)
        func lastWord(after prefix: [String]) -> String? {
            guard words.count > prefix.count, Array(words.prefix(prefix.count)) == prefix, let last = words.last else { return nil }
            return last == "external" ? nil : nonEmpty(last)
        }
        switch kind(ofEventRoutingKey: routingKey) {
        case .tftp: return lastWord(after: ["tftp", "success"]) ?? lastWord(after: ["tftp", "failure"])
        case .http: return lastWord(after: ["http", "response"])
        case .dhcp: return lastWord(after: ["dhcp", "bind", "success"])
        case .sku: return lastWord(after: ["sku", "assigned"])
        case .graph, .task: return bodyNodeId
        case .node: return bodyNodeId ?? lastWord(after: ["node"])
        case .log, .other: return bodyNodeId
        }
    }

    /// The node a log record is about: its `subject`, unless that is RackHD's `Server` (the
    /// subject of records about no node in particular).
    public static func nodeId(ofLogRecord body: JSONValue?) -> String? {
        guard let subject = nonEmpty(body?["subject"]?.stringValue), subject != "Server" else { return nil }
        return subject
    }

    /// When an `on.events` message says it happened, in epoch milliseconds: the `createdAt` of
    /// RackHD's external events. Other events carry no time of their own (`http.response`'s
    /// `time` is a duration), so they are stamped when received.
    public static func ownTime(ofEventBody body: JSONValue?) -> Int64? {
        body?["createdAt"]?.stringValue.flatMap(Timestamps.milliseconds(iso8601:))
    }

    private static func nonEmpty(_ text: String?) -> String? {
        guard let text, !text.isEmpty else { return nil }
        return text
    }
}
