import BusTestSupport
import Foundation
import Synchronization
import Testing

@testable import BusCore

/// `publishRawConfirmed(…acknowledging:onSettled:)`: a consumer forwards work, and the bus settles
/// the input when the broker confirms the output, without a task waiting for it.
@Suite("Forwarding work: the input is acknowledged only once the output is confirmed", .timeLimit(.minutes(2)))
struct ForwardTests {
    @Test("a forward the broker confirms acknowledges its delivery; one it cannot route hands it back, redelivered")
    func forward() async throws {
        try await TestBroker.withBus { bus in
            let input = "\(bus.configuration.exchangePrefix).forward-input"
            let output = "\(bus.configuration.exchangePrefix).forward-output"
            let inputs = try await bus.workQueue(named: input, bindings: [(.events, "forward.in")], prefetch: 10, as: JSONValue.self)
            let outputs = try await bus.workQueue(named: output, bindings: [(.events, "forward.out")], prefetch: 10, as: JSONValue.self)
            try await bus.publishConfirmed(["n": 1], to: .events, routingKey: "forward.in", persistent: true)
            let outcomes = Mutex<[Result<Void, BusError>]>([])
            var seen: [(redelivered: Bool, body: JSONValue)] = []
            for await delivery in inputs {
                seen.append((delivery.redelivered, delivery.message))
                // First to a key no queue takes (mandatory: refused), then to the output queue.
                let key = seen.count == 1 ? "forward.nowhere" : "forward.out"
                bus.publishRawConfirmed(
                    body: delivery.body, toExchangeNamed: bus.name(of: .events), routingKey: key, type: "Object", persistent: true,
                    mandatory: true, acknowledging: delivery
                ) { result in outcomes.withLock { $0.append(result) } }
                if seen.count == 2 { break }
            }
            #expect(seen.map(\.redelivered) == [false, true], "the refused forward's input came back")
            #expect(seen.map(\.body) == [["n": 1], ["n": 1]])
            for await forwarded in outputs {
                #expect(forwarded.message == ["n": 1])
                forwarded.ack()
                break
            }
            try await eventually { outcomes.withLock { $0.count } == 2 }
            let codes = outcomes.withLock {
                $0.map { result -> BusError.Code? in if case .failure(let error) = result { error.code } else { nil } }
            }
            #expect(codes == [.unroutable, nil])
            // Acknowledged, not merely outstanding: with its consumer gone, nothing is left to redeliver.
            inputs.cancel()
            try await eventually { try await bus.inspectQueue(named: input).consumers == 0 }
            #expect(try await bus.inspectQueue(named: input).messages == 0)
            try await bus.deleteQueue(named: input)
            try await bus.deleteQueue(named: output)
        }
    }

    @Test("on a bus that has shut down, a forward reports the shutdown at once")
    func shutDown() async throws {
        let bus = MessageBus(configuration: try TestBroker.configuration(), logger: TestBroker.logger)
        bus.shutdown()
        let outcome = Mutex<Result<Void, BusError>?>(nil)
        bus.publishRawConfirmed(body: Array("{}".utf8), toExchangeNamed: "x", routingKey: "y", type: "Object") { result in
            outcome.withLock { $0 = result }
        }
        let code = outcome.withLock { value -> BusError.Code? in if case .failure(let error) = value { error.code } else { nil } }
        #expect(code == .shutdown)
    }

    @Test("a publish that does not wait reaches its subscribers; on a bus that has shut down it throws the shutdown")
    func publishWithoutWaiting() async throws {
        try await TestBroker.withBus { bus in
            let events = try await bus.subscribe(to: .events, patterns: ["sku.assigned.#"], as: NodeEvent.self)
            for sequence in 0..<3 {
                try bus.publishWithoutWaiting(NodeEvent(nodeId: "n1", sequence: sequence), to: .events, routingKey: "sku.assigned.n1")
            }
            #expect(try await collect(events, count: 3).map(\.message.sequence) == [0, 1, 2])
        }
        let bus = MessageBus(configuration: try TestBroker.configuration(), logger: TestBroker.logger)
        bus.shutdown()
        #expect(throws: BusError.self) { try bus.publishWithoutWaiting(NodeEvent(nodeId: "n1", sequence: 0), to: .events, routingKey: "x") }
        do {
            try bus.publishWithoutWaiting(NodeEvent(nodeId: "n1", sequence: 0), to: .events, routingKey: "x")
        } catch {
            #expect(error.code == .shutdown)
        }
    }
}

/// Publishes and acks are framed by the bus and sent together, once per turn of its I/O loop.
@Suite("Frames the bus queues itself arrive whole and in order", .timeLimit(.minutes(2)))
struct QueuedFrameTests {
    @Test("bodies larger than a frame and nested headers arrive as sent, in order, between acks")
    func largeAndSmall() async throws {
        try await TestBroker.withBus { bus in
            let queue = "\(bus.configuration.exchangePrefix).frames"
            let received = try await bus.workQueue(named: queue, bindings: [(.events, "frames.#")], prefetch: 50, as: JSONValue.self)
            // A frame holds 131,072 bytes, 8 of them its own: bodies up to, at, and past that.
            func text(_ count: Int) -> [UInt8] { Array(("\"" + String(repeating: "x", count: count - 2) + "\"").utf8) }
            let bodies: [[UInt8]] = [Array("{}".utf8), text(300_000), text(131_064), text(131_065), text(131_063), Array("\"last\"".utf8)]
            let headers: [String: HeaderValue] = [
                "x-nested": .table(["list": .array([.string("a"), .int(1), .table(["deep": .bool(true)])])]), "x-text": .string("é"),
            ]
            for (index, body) in bodies.enumerated() {
                try await bus.publishRawConfirmed(
                    body: body, toExchangeNamed: bus.name(of: .events), routingKey: "frames.\(index)", type: "Bytes", persistent: true,
                    headers: headers)
            }
            var seen: [(key: String, body: [UInt8])] = []
            for await delivery in received {
                #expect(delivery.properties.headers["x-nested"] == headers["x-nested"])
                #expect(delivery.properties.headers["x-text"] == .string("é"))
                #expect(delivery.properties.type == "Bytes")
                seen.append((delivery.routingKey, delivery.body))
                delivery.ack()
                if seen.count == bodies.count { break }
            }
            #expect(seen.map(\.key) == bodies.indices.map { "frames.\($0)" })
            #expect(seen.map(\.body) == bodies)
            // Every ack reached the broker: nothing is left for another consumer.
            received.cancel()
            try await eventually { try await bus.inspectQueue(named: queue).consumers == 0 }
            #expect(try await bus.inspectQueue(named: queue).messages == 0)
            try await bus.deleteQueue(named: queue)
        }
    }

    @Test("publishes and acks wait in the connection until it flushes, then go out together")
    func heldUntilFlushed() async throws {
        let configuration = try TestBroker.configuration()
        try await TestBroker.withBus(configuration) { bus in
            let queue = "\(bus.configuration.exchangePrefix).frames-held"
            try await bus.declareWorkQueue(named: queue, bindings: [(.events, "held.#")])
            // A connection of its own, used by this test alone and one step at a time.
            let connection = try AMQPConnection(configuration: configuration, endpoint: configuration.endpoints[0])
            defer { connection.close() }
            try connection.openChannel(1)
            for index in 0..<10 {
                try connection.publish(
                    channel: 1, exchange: bus.name(of: .events), routingKey: "held.\(index)", mandatory: false,
                    properties: MessageProperties(contentType: "application/json"), body: Array("{}".utf8))
            }
            #expect(connection.hasQueuedOutput)
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await bus.inspectQueue(named: queue).messages == 0, "nothing is sent before the flush")
            try connection.flush()
            #expect(!connection.hasQueuedOutput)
            try await eventually { try await bus.inspectQueue(named: queue).messages == 10 }
            try await bus.deleteQueue(named: queue)
        }
    }
}
