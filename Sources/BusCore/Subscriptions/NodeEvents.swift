/// One event about a node, as ``MessageBus/subscribe(toNode:file:line:)`` delivers it.
public struct NodeEvent: Sendable, Equatable {
    public let routingKey: String
    /// The first word of the routing key: `tftp`, `dhcp`, `http`, `graph`, `sku` or `node`.
    public let kind: String
    public let body: JSONValue
    public let type: String?
}

extension MessageBus {
    /// Every event about one node, on one queue, so in the order the broker received them:
    /// `tftp.success|failure.<node>`, `dhcp.bind.success.<node>`, `http.response.<node>`,
    /// `sku.assigned.<node>`, `node.discovered.<node>` (the node id is their last word) and `graph.*` events whose body
    /// names the node (`nodeId`, as RackBus's TaskGraphRunner writes it).
    public func subscribe(toNode nodeID: String, file: String = #fileID, line: Int = #line) async throws(BusError) -> Subscription<
        NodeEvent
    > {
        guard NodeEventFilter.isValidNodeID(nodeID) else {
            throw BusError(
                code: .invalidConfiguration, message: "a node id is one routing-key word (no '.', '*', '#'), not '\(nodeID)'", file: file,
                line: line)
        }
        let exchange = name(of: .events)
        let spec = broadcastSpec(base: "\(exchange):node.\(nodeID)", exchange: exchange, patterns: ["#.\(nodeID)", "graph.#"])
        let decoder = SubscriptionDecoder()
        return try await attributing(to: file, line) { () async throws(BusError) in
            try await makeSubscription(spec) { delivery in
                let body = (try? WireFormat.decode(JSONValue.self, from: delivery.body, using: decoder.decoder)) ?? .null
                guard let kind = NodeEventFilter.kind(of: delivery.routingKey, body: body, nodeID: nodeID) else {
                    throw NotForThisSubscriber()
                }
                return NodeEvent(routingKey: delivery.routingKey, kind: kind, body: body, type: delivery.properties.type)
            }
        }
    }
}

/// Which events belong to a node, as a pure function of the routing key and body.
public enum NodeEventFilter {
    static let nodeKeyedKinds: Set<Substring> = ["tftp", "dhcp", "http", "sku", "node"]

    public static func isValidNodeID(_ nodeID: String) -> Bool {
        !nodeID.isEmpty && !nodeID.contains(".") && !nodeID.contains("*") && !nodeID.contains("#")
    }

    /// The event's kind if it is about `nodeID`, else nil.
    public static func kind(of routingKey: String, body: JSONValue, nodeID: String) -> String? {
        let words = routingKey.split(separator: ".", omittingEmptySubsequences: false)
        guard let first = words.first else { return nil }
        if first == "graph" {
            return body["nodeId"]?.stringValue == nodeID ? "graph" : nil
        }
        guard words.count >= 2, words.last.map(String.init) == nodeID, nodeKeyedKinds.contains(first) else { return nil }
        return String(first)
    }
}
