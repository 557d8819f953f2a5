import BusCore
import BusTestSupport
import Testing

@Suite("Per-node fan-out")
struct NodeFanOutTests {
    @Test("subscribe(toNode:) gets the node's tftp, dhcp, http.response, node, sku.assigned and graph events, in order, and nothing else")
    func oneNodesEvents() async throws {
        try await TestBroker.withBus { bus in
            let followed = try await bus.subscribe(toNode: "n1")
            let other = try await bus.subscribe(toNode: "n2")
            let aboutN1: JSONValue = .object(["nodeId": .string("n1")])
            let aboutN2: JSONValue = .object(["nodeId": .string("n2")])
            let sent: [(String, JSONValue)] = [
                ("tftp.success.n1", .object([:])),
                ("tftp.success.n2", .object([:])),
                ("graph.started.g1", aboutN1),
                ("dhcp.bind.success.n1", .object(["ip": .string("172.31.128.20")])),
                ("task.finished.t1", aboutN1),
                ("http.response.n1", .object([:])),
                ("node.discovered.n1", aboutN1),
                ("node.discovered.n2", aboutN2),
                ("graph.started.g2", aboutN2),
                ("dhcp.bind.success.n10", .object([:])),
                ("sku.assigned.n1", .object(["sku": .string("s")])),
                ("tftp.failure.n1", .object([:])),
                ("graph.finished.g1", aboutN1),
            ]
            for (key, body) in sent {
                try await bus.publish(body, to: .events, routingKey: key)
            }
            let expected = [
                "graph.started.g1", "dhcp.bind.success.n1", "http.response.n1", "node.discovered.n1", "sku.assigned.n1", "tftp.failure.n1",
                "graph.finished.g1",
            ]
            let seen = try await collect(followed, count: expected.count + 1).map(\.message)
            #expect(seen.map(\.routingKey) == ["tftp.success.n1"] + expected)
            #expect(seen.map(\.kind) == ["tftp", "graph", "dhcp", "http", "node", "sku", "tftp", "graph"])
            #expect(seen[2].body["ip"] == .string("172.31.128.20"))
            #expect(await drain(followed, for: .milliseconds(300)).isEmpty, "another node's events or task events leaked in")
            let seenByOther = try await collect(other, count: 3).map(\.message.routingKey)
            #expect(seenByOther == ["tftp.success.n2", "node.discovered.n2", "graph.started.g2"])
        }
    }

    @Test("a node id that is not one routing-key word is refused")
    func invalidNodeID() async throws {
        try await TestBroker.withBus { bus in
            for bad in ["", "a.b", "*", "#"] {
                await #expect(throws: BusError.self) { _ = try await bus.subscribe(toNode: bad) }
            }
        }
    }
}
