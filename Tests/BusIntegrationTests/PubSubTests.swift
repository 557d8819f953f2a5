import BusCore
import BusTestSupport
import Foundation
import Testing

@Suite("Topology on the real broker", .timeLimit(.minutes(1)))
struct TopologyTests {
    @Test("the nine exchanges exist with RackHD's names and flags (topic, durable, not auto-delete)")
    func conventionExchanges() async throws {
        // The default prefix `on`, exactly as RackHD names them.
        let configuration = try TestBroker.configuration(prefix: "on")
        try await TestBroker.withBus(configuration) { bus in
            let expected = [
                "on.configuration", "on.events", "on.http", "on.dhcp", "on.tftp", "on.logging",
                "on.task-graph-runner", "on.scheduler", "on.task",
            ]
            #expect(Exchange.conventions.map { bus.name(of: $0) } == expected)
            for name in expected {
                // Passive declare: succeeds only if the exchange exists.
                #expect(try await bus.exchangeExists(named: name), "\(name) missing")
                let info = try await TestBroker.management("/api/exchanges/%2F/\(name)")
                #expect(info["type"] == "topic", "\(name)")
                #expect(info["durable"] == true, "\(name)")
                #expect(info["auto_delete"] == false, "\(name)")
                #expect(info["internal"] == false, "\(name)")
            }
            #expect(try await bus.exchangeExists(named: "on.does-not-exist") == false)
            // The bus survived the refused passive declare.
            #expect(try await bus.exchangeExists(named: "on.events"))
        }
    }

    @Test("the prefix is configurable")
    func customPrefix() async throws {
        let prefix = TestBroker.uniquePrefix()
        try await TestBroker.withBus(try TestBroker.configuration(prefix: prefix)) { bus in
            #expect(bus.name(of: .taskGraphRunner) == "\(prefix).task-graph-runner")
            let exists = try await bus.exchangeExists(named: "\(prefix).task-graph-runner")
            #expect(exists)
        }
    }
}

@Suite("Publish and subscribe on the real broker", .timeLimit(.minutes(1)))
struct PubSubTests {
    @Test("topic patterns route with * (one word) and # (any number of words)")
    func wildcardRouting() async throws {
        try await TestBroker.withBus { bus in
            let star = try await bus.subscribe(to: .events, patterns: ["graph.*.g1"], as: NodeEvent.self)
            let hash = try await bus.subscribe(to: .events, patterns: ["dhcp.#"], as: NodeEvent.self)
            let keys = [
                "graph.started.g1", "graph.finished.g1", "graph.started.g1.extra", "dhcp.bind.success.n1", "dhcp", "tftp.success.n1",
            ]
            for (index, key) in keys.enumerated() {
                try await bus.publish(NodeEvent(nodeId: key, sequence: index), to: .events, routingKey: key)
            }
            let starred = try await collect(star, count: 2)
            #expect(starred.map(\.routingKey) == ["graph.started.g1", "graph.finished.g1"])
            let hashed = try await collect(hash, count: 2)
            #expect(hashed.map(\.routingKey) == ["dhcp.bind.success.n1", "dhcp"])
            #expect(hashed[0].type == "Object")
            #expect(hashed[0].properties.contentType == "application/json")
            // Nothing else arrives.
            #expect(await drain(star, for: .milliseconds(200)).isEmpty)
            #expect(await drain(hash, for: .milliseconds(200)).isEmpty)
        }
    }

    @Test("every broadcast subscriber gets its own copy, in order")
    func fanOut() async throws {
        try await TestBroker.withBus { bus in
            let first = try await bus.subscribe(to: .events, patterns: ["graph.finished.#"], as: NodeEvent.self)
            let second = try await bus.subscribe(to: .events, patterns: ["graph.finished.#"], as: NodeEvent.self)
            for sequence in 0..<50 {
                try await bus.publish(NodeEvent(nodeId: "n1", sequence: sequence), to: .events, routingKey: "graph.finished.g\(sequence)")
            }
            let a = try await collect(first, count: 50)
            let b = try await collect(second, count: 50)
            #expect(a.map(\.message.sequence) == Array(0..<50))
            #expect(b.map(\.message.sequence) == Array(0..<50))
        }
    }

    @Test("a subscriber that does not keep up holds only its window; the broker keeps the rest and nothing is lost")
    func broadcastWindow() async throws {
        var configuration = try TestBroker.configuration()
        configuration.broadcastWindow = 10
        try await TestBroker.withBus(configuration) { bus in
            let slow = try await bus.subscribe(to: .events, patterns: ["sku.assigned.#"], as: NodeEvent.self)
            for sequence in 0..<200 {
                try await bus.publish(NodeEvent(nodeId: "n1", sequence: sequence), to: .events, routingKey: "sku.assigned.n\(sequence)")
            }
            // Nobody has taken anything yet: 10 are with this process, 190 wait on the broker.
            var waiting = try await bus.inspectQueue(named: slow.queueName).messages
            let deadline = ContinuousClock.now + .seconds(10)
            while waiting != 190, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                waiting = try await bus.inspectQueue(named: slow.queueName).messages
            }
            #expect(waiting == 190)
            let received = try await collect(slow, count: 200)
            #expect(received.map(\.message.sequence) == Array(0..<200))
            #expect(try await bus.inspectQueue(named: slow.queueName).messages == 0)
        }
    }

    @Test("broadcast deliveries waiting for their ack stand on a channel of their own, never in front of work-queue acks")
    func broadcastsApartFromWork() async throws {
        var configuration = try TestBroker.configuration()
        configuration.connectionName = "rackbus-tests-\(configuration.exchangePrefix)"
        // Acknowledged 100 at a time: the 20 taken below wait unacknowledged.
        configuration.broadcastWindow = 400
        let (queue, name) = ("\(configuration.exchangePrefix).work", configuration.connectionName)
        try await TestBroker.withBus(configuration) { bus in
            let events = try await bus.subscribe(to: .events, patterns: ["sku.assigned.#"], as: NodeEvent.self)
            let work = try await bus.workQueue(named: queue, bindings: [(.task, "work.#")], prefetch: 16, as: NodeEvent.self)
            for sequence in 0..<20 {
                try await bus.publish(NodeEvent(nodeId: "n1", sequence: sequence), to: .events, routingKey: "sku.assigned.n\(sequence)")
            }
            #expect(try await collect(events, count: 20).count == 20)
            for sequence in 0..<5 {
                try await bus.publish(NodeEvent(nodeId: "n", sequence: sequence), to: .task, routingKey: "work.item", persistent: true)
            }
            for delivery in try await collect(work, count: 5) { delivery.ack() }
            // The broker's own view of this connection's channels (rabbitmqctl asks the channel
            // processes themselves): what each holds unacknowledged, and how many consumers.
            func rows(_ arguments: String...) async throws -> [[String]] {
                let output = try await TestBroker.run(
                    TestBroker.repositoryRoot.appendingPathComponent("scripts/broker").path, ["ctl", "-q"] + arguments)
                return output.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
            }
            let connection = try #require(
                try await rows("list_connections", "pid", "client_properties").first {
                    $0.count == 2 && $0[1].contains("\"\(name)\"")
                }?[0])
            var holding: [[String]] = []
            let deadline = ContinuousClock.now + .seconds(20)
            repeat {
                holding = try await rows("list_channels", "connection", "number", "messages_unacknowledged", "consumer_count").filter {
                    $0.count == 4 && $0[0] == connection && (Int($0[2]) ?? 0) > 0
                }
                if holding.count == 1, holding[0][2] == "20" { break }
                try await Task.sleep(for: .milliseconds(200))
            } while ContinuousClock.now < deadline
            #expect(holding.map { $0[2] } == ["20"], "only the taken broadcasts wait for an ack: \(holding)")
            #expect(holding.first?[3] == "1", "on a channel whose one consumer is the broadcast subscription: \(holding)")
            try await bus.deleteQueue(named: queue)
        }
    }

    @Test("a work queue shares its messages across two consumers, each message once")
    func workQueueBalances() async throws {
        let configuration = try TestBroker.configuration()
        let queue = "\(configuration.exchangePrefix).work"
        try await TestBroker.withBus(configuration) { bus in
            try await TestBroker.withBus(configuration) { other in
                let one = try await bus.workQueue(named: queue, bindings: [(.task, "work.#")], prefetch: 1, as: NodeEvent.self)
                let two = try await other.workQueue(named: queue, bindings: [(.task, "work.#")], prefetch: 1, as: NodeEvent.self)
                let total = 40
                for sequence in 0..<total {
                    try await bus.publish(NodeEvent(nodeId: "n", sequence: sequence), to: .task, routingKey: "work.item", persistent: true)
                }
                let seen = Locked<[[Int]]>([[], []])
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (index, subscription) in [one, two].enumerated() {
                        group.addTask {
                            for await delivery in subscription {
                                // Slow consumers, so that prefetch 1 makes the broker alternate.
                                try await Task.sleep(for: .milliseconds(5))
                                seen.withLock { $0[index].append(delivery.message.sequence) }
                                delivery.ack()
                            }
                        }
                    }
                    let deadline = ContinuousClock.now + .seconds(20)
                    while seen.withLock({ $0[0].count + $0[1].count }) < total, ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    try await Task.sleep(for: .milliseconds(100))
                    group.cancelAll()
                }
                let received = seen.withLock { $0 }
                let merged = received.flatMap { $0 }.sorted()
                #expect(merged == Array(0..<total), "each message exactly once")
                #expect(received.allSatisfy { $0.count >= total / 4 }, "both consumers worked: \(received.map(\.count))")
                let info = try await TestBroker.management("/api/queues/%2F/\(queue)")
                #expect(info["durable"] == true)
                try await bus.deleteQueue(named: queue)
            }
        }
    }

    @Test("a message that does not decode is dropped and counted; the subscription goes on")
    func undecodableMessage() async throws {
        try await TestBroker.withBus { bus in
            let events = try await bus.subscribe(to: .events, patterns: ["sku.assigned.*"], as: NodeEvent.self)
            try await bus.publishRaw(
                body: Array("garbage".utf8), toExchangeNamed: bus.name(of: .events), routingKey: "sku.assigned.n1",
                properties: MessageProperties(contentType: "application/json", type: "Object"))
            try await bus.publish(NodeEvent(nodeId: "n1", sequence: 1), to: .events, routingKey: "sku.assigned.n1")
            let received = try await collect(events, count: 1)
            #expect(received[0].message == NodeEvent(nodeId: "n1", sequence: 1))
        }
    }

    @Test("a work-queue message that does not decode is rejected, not redelivered forever")
    func undecodableWorkItem() async throws {
        let configuration = try TestBroker.configuration()
        let queue = "\(configuration.exchangePrefix).poison"
        try await TestBroker.withBus(configuration) { bus in
            let work = try await bus.workQueue(named: queue, bindings: [(.task, "poison")], prefetch: 4, as: NodeEvent.self)
            try await bus.publishRaw(
                body: Array("{not json".utf8), toExchangeNamed: bus.name(of: .task), routingKey: "poison",
                properties: MessageProperties(contentType: "application/json"))
            try await bus.publish(NodeEvent(nodeId: "ok", sequence: 2), to: .task, routingKey: "poison")
            let received = try await collect(work, count: 1)
            #expect(received[0].message.sequence == 2)
            received[0].ack()
            // Once the good message is acked nothing is left: the poison one was not requeued.
            try await Task.sleep(for: .milliseconds(300))
            let status = try await bus.inspectQueue(named: queue)
            #expect(status.messages == 0, "the poison message is gone from the queue")
            #expect(status.consumers == 1)
            #expect(await drain(work, for: .milliseconds(200)).isEmpty, "the poison message came back")
            try await bus.deleteQueue(named: queue)
        }
    }

    @Test("publisher confirms: confirmed when routed, unroutable when a mandatory message matches no queue")
    func publisherConfirms() async throws {
        try await TestBroker.withBus { bus in
            let events = try await bus.subscribe(to: .events, patterns: ["tftp.success.*"], as: NodeEvent.self)
            try await bus.publishConfirmed(
                NodeEvent(nodeId: "n1", sequence: 1), to: .events, routingKey: "tftp.success.n1", mandatory: true)
            let error = await #expect(throws: BusError.self) {
                try await bus.publishConfirmed(
                    NodeEvent(nodeId: "n1", sequence: 2), to: .events, routingKey: "nobody.listens", mandatory: true)
            }
            #expect(error?.code == .unroutable)
            #expect(try await collect(events, count: 1)[0].message.sequence == 1)
            // Many confirms in flight at once.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for sequence in 0..<200 {
                    group.addTask {
                        try await bus.publishConfirmed(
                            NodeEvent(nodeId: "n1", sequence: sequence), to: .events, routingKey: "tftp.success.n1")
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    @Test("publishing to a missing exchange does not disturb subscriptions")
    func publishToMissingExchange() async throws {
        try await TestBroker.withBus { bus in
            let events = try await bus.subscribe(to: .events, patterns: ["http.response.*"], as: NodeEvent.self)
            try await bus.publish(NodeEvent(nodeId: "x", sequence: 0), toExchangeNamed: "no-such-exchange-\(UUID())", routingKey: "x")
            // The broker closes the publishing channel over it; a publish sent before the bus has
            // heard of that is dropped with the channel, so this one is confirmed, and sent again
            // until it is (on a loaded machine the close may take a while to arrive).
            try await eventually {
                (try? await bus.publishConfirmed(NodeEvent(nodeId: "n1", sequence: 1), to: .events, routingKey: "http.response.n1")) != nil
            }
            #expect(try await collect(events, count: 1)[0].message.sequence == 1)
        }
    }
}
