import BusCore
import Testing

@Suite("Where a dead letter first came from (x-death)")
struct DeadLetterOriginTests {
    /// One `x-death` entry as RabbitMQ writes it.
    static func death(queue: String, exchange: String, keys: [String], reason: String = "delivery_limit") -> HeaderValue {
        .table([
            "queue": .string(queue), "exchange": .string(exchange), "routing-keys": .array(keys.map(HeaderValue.string)),
            "reason": .string(reason), "count": .int(1),
        ])
    }

    @Test("the entry for the queue gives the exchange and the first routing key; other queues' entries are passed over")
    func entryForTheQueue() {
        let headers: [String: HeaderValue] = [
            "x-death": .array([
                Self.death(queue: "on.other", exchange: "on.task", keys: ["run.2"]),
                Self.death(queue: "on.rackbus.task-runner", exchange: "on.task", keys: ["run.1", "cc.key"]),
            ])
        ]
        #expect(
            DeadLetterOrigin(headers: headers, queue: "on.rackbus.task-runner")
                == DeadLetterOrigin(exchange: "on.task", routingKey: "run.1"))
    }

    @Test("no x-death, no entry for the queue, the default exchange, or a malformed entry: no origin")
    func noOrigin() {
        let queue = "on.q"
        #expect(DeadLetterOrigin(headers: [:], queue: queue) == nil)
        #expect(DeadLetterOrigin(headers: ["x-death": .string("rejected")], queue: queue) == nil)
        #expect(
            DeadLetterOrigin(
                headers: ["x-death": .array([Self.death(queue: "on.other", exchange: "on.events", keys: ["a"])])], queue: queue) == nil)
        #expect(
            DeadLetterOrigin(headers: ["x-death": .array([Self.death(queue: queue, exchange: "", keys: [queue])])], queue: queue) == nil)
        #expect(
            DeadLetterOrigin(headers: ["x-death": .array([Self.death(queue: queue, exchange: "on.events", keys: [])])], queue: queue) == nil
        )
        #expect(DeadLetterOrigin(headers: ["x-death": .array([.table(["queue": .string(queue)])])], queue: queue) == nil)
    }
}
