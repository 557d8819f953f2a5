import BusCore
import BusTestSupport
import Foundation
import Testing

@Suite("Work queues take only what their exchanges route", .timeLimit(.minutes(2)))
struct WorkQueueSourceTests {
    @Test(
        "a message put into a work queue by name, through the default exchange, is refused; the next one through its exchange is taken",
        arguments: BusConfiguration.WorkQueueType.allCases)
    func refusesTheDefaultExchange(type: BusConfiguration.WorkQueueType) async throws {
        var configuration = try TestBroker.configuration()
        configuration.workQueueType = type
        try await TestBroker.withBus(configuration) { bus in
            let queue = "\(bus.configuration.exchangePrefix).source-checked-\(type)"
            let work = try await bus.workQueue(named: queue, bindings: [(.events, "work.#")], as: [String: String].self)
            try await bus.publishRawConfirmed(
                body: Array(#"{"kind":"by name"}"#.utf8), toExchangeNamed: "", routingKey: queue, type: "Object", persistent: true)
            try await bus.publishConfirmed(["kind": "routed"], to: .events, routingKey: "work.routed", persistent: true)
            var taken: [Delivery<[String: String]>] = []
            for await delivery in work {
                taken.append(delivery)
                delivery.ack()
                break
            }
            #expect(taken.map { $0.message["kind"] } == ["routed"])
            #expect(taken.first?.exchange == bus.name(of: .events))
            #expect(taken.first?.routingKey == "work.routed")
            try await eventually { try await bus.inspectQueue(named: queue).messages == 0 }
            if type == .quorum {
                // Rejected without requeue: the dead-letter queue keeps it, and the broker's record
                // of where it came from names the default exchange, so it cannot be requeued.
                let deadLetters = try await bus.deadLetters(of: queue, prefetch: 1)
                for await letter in deadLetters {
                    #expect(String(decoding: letter.body, as: UTF8.self) == #"{"kind":"by name"}"#)
                    let death = letter.properties.headers["x-death"]?.arrayValue?.first?.tableValue
                    #expect(death?["reason"] == .string("rejected"))
                    #expect(death?["exchange"] == .string(""))
                    #expect(DeadLetterOrigin(headers: letter.properties.headers, queue: queue) == nil)
                    letter.ack()
                    break
                }
                try await bus.deleteQueue(named: BusConfiguration.deadLetterQueue(of: queue))
            }
            try await bus.deleteQueue(named: queue)
        }
    }

    @Test("headers with arrays and tables, nested, arrive as they were sent")
    func nestedHeaders() async throws {
        try await TestBroker.withBus { bus in
            let exchange = bus.name(of: .events)
            let received = try await bus.subscribeRaw(toExchangeNamed: exchange, patterns: ["nested.headers"])
            let headers: [String: HeaderValue] = [
                "list": .array([.string("a"), .int(-7), .bool(true), .double(0.5), .table(["k": .string("v")])]),
                "record": .table(["inner": .array([.array([]), .table([:])]), "count": .int(3)]),
                "plain": .string("text"),
            ]
            try await bus.publishRaw(
                body: Array("{}".utf8), toExchangeNamed: exchange, routingKey: "nested.headers",
                properties: MessageProperties(contentType: jsonContentType, type: "Object", headers: headers))
            for await delivery in received {
                #expect(delivery.properties.headers == headers)
                break
            }
        }
    }
}
