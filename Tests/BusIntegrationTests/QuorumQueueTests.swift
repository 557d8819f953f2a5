import BusCore
import BusTestSupport
import Foundation
import Testing

@Suite("Quorum work queues and their dead-letter queues", .timeLimit(.minutes(2)))
struct QuorumQueueTests {
    @Test("RACKBUS_QUEUE_TYPE and RACKBUS_DELIVERY_LIMIT choose the work queues' arguments; classic is the default")
    func settings() throws {
        let classic = try BusConfiguration.fromEnvironment([:])
        #expect(classic.workQueueType == .classic)
        #expect(
            classic.workQueueArguments(for: "on.q", adding: ["x-single-active-consumer": .bool(true)]) == [
                "x-single-active-consumer": .bool(true)
            ])
        let quorum = try BusConfiguration.fromEnvironment(["RACKBUS_QUEUE_TYPE": "quorum", "RACKBUS_DELIVERY_LIMIT": "3"])
        #expect(
            quorum.workQueueArguments(for: "on.q")
                == [
                    "x-queue-type": .string("quorum"), "x-delivery-limit": .int(3), "x-dead-letter-exchange": .string(""),
                    "x-dead-letter-routing-key": .string("on.q.dead-letter"),
                ])
        for bad in [["RACKBUS_QUEUE_TYPE": "mirrored"], ["RACKBUS_DELIVERY_LIMIT": "0"], ["RACKBUS_DELIVERY_LIMIT": "many"]] {
            #expect(throws: BusError.self) { try BusConfiguration.fromEnvironment(bad) }
        }
    }

    @Test("a message handed back more often than the delivery limit moves to the dead-letter queue, and the rest flows on")
    func poisonMessageIsDeadLettered() async throws {
        var configuration = try TestBroker.configuration()
        configuration.workQueueType = .quorum
        configuration.deliveryLimit = 2
        try await TestBroker.withBus(configuration) { bus in
            let queue = "\(bus.configuration.exchangePrefix).quorum-work"
            let work = try await bus.workQueue(named: queue, bindings: [(.events, "work.#")], as: [String: String].self)
            try await bus.publishConfirmed(["kind": "poison"], to: .events, routingKey: "work.poison", persistent: true)
            try await bus.publishConfirmed(["kind": "fine"], to: .events, routingKey: "work.fine", persistent: true)
            var handled: [String] = []
            var poisonDeliveries = 0
            for await delivery in work {
                if delivery.message["kind"] == "poison" {
                    // The consumer cannot handle it and hands it back, again and again.
                    poisonDeliveries += 1
                    delivery.reject(requeue: true)
                } else {
                    handled.append(delivery.message["kind"] ?? "")
                    delivery.ack()
                }
                if !handled.isEmpty, poisonDeliveries > 2 { break }
            }
            #expect(handled == ["fine"])
            #expect(poisonDeliveries == 3, "delivered once, then redelivered up to the limit of 2")
            let deadLetters = BusConfiguration.deadLetterQueue(of: queue)
            try await eventually { try await bus.inspectQueue(named: deadLetters).messages == 1 }
            #expect(try await bus.inspectQueue(named: queue).messages == 0)
            try await bus.deleteQueue(named: queue)
            try await bus.deleteQueue(named: deadLetters)
        }
    }
}

@Suite("rackbus dead-letters", .timeLimit(.minutes(2)))
struct DeadLettersCLITests {
    @Test(
        "lists a quorum work queue's poison messages without taking them, and requeues them through the exchange they first came through"
    )
    func listAndRequeue() async throws {
        var configuration = try TestBroker.configuration()
        configuration.workQueueType = .quorum
        configuration.deliveryLimit = 1
        try await TestBroker.withBus(configuration) { bus in
            let prefix = bus.configuration.exchangePrefix
            let queue = "\(prefix).rackbus.poisoned"
            let arguments = ["--url", TestBroker.url, "--prefix", prefix]
            do {
                let work = try await bus.workQueue(named: queue, bindings: [(.events, "poison.#")], as: [String: String].self)
                // Put in by name (first, so the consumer meets it before it stops): the work queue
                // refuses it at once, and it cannot be requeued.
                try await bus.publishRawConfirmed(
                    body: Array(#"{"n":"by name"}"#.utf8), toExchangeNamed: "", routingKey: queue, type: "Object", persistent: true)
                for index in 1...2 {
                    try await bus.publishConfirmed(["n": "\(index)"], to: .events, routingKey: "poison.\(index)", persistent: true)
                }
                var deliveries = 0
                for await delivery in work {
                    delivery.reject(requeue: true)
                    deliveries += 1
                    if deliveries == 4 { break }
                }
            }
            let deadLetters = BusConfiguration.deadLetterQueue(of: queue)
            try await eventually { try await bus.inspectQueue(named: deadLetters).messages == 3 }
            let listed = try await TestBroker.run(ServiceProcess.executable.path, ["dead-letters", "list", "rackbus.poisoned"] + arguments)
            #expect(listed.contains(#"{"n":"1"}"#) && listed.contains(#"{"n":"2"}"#), "\(listed)")
            #expect(listed.contains("3 of 3 dead letters"), "\(listed)")
            try await eventually { try await bus.inspectQueue(named: deadLetters).messages == 3 }
            // Exits 1, since one stays.
            let failure = await #expect(throws: TestFailure.self) {
                _ = try await TestBroker.run(ServiceProcess.executable.path, ["dead-letters", "requeue", queue] + arguments)
            }
            let requeued = "\(failure.map { "\($0)" } ?? "")"
            #expect(requeued.contains("exited 1") && requeued.contains("requeued 2 dead letters"), "\(requeued)")
            #expect(requeued.contains("left in place"), "\(requeued)")
            try await eventually { try await bus.inspectQueue(named: queue).messages == 2 }
            // The one left in place was handed back while the tool still consumed, so it may have
            // gone out to the tool again; it is ready once the broker has seen the tool's connection close.
            try await eventually { try await bus.inspectQueue(named: deadLetters).messages == 1 }
            // They came back as the first time: through on.events, with their own routing keys.
            let work = try await bus.workQueue(named: queue, bindings: [(.events, "poison.#")], as: [String: String].self)
            var back: [String: String] = [:]
            for await delivery in work {
                #expect(delivery.exchange == bus.name(of: .events))
                back[delivery.routingKey] = delivery.message["n"]
                delivery.ack()
                if back.count == 2 { break }
            }
            #expect(back == ["poison.1": "1", "poison.2": "2"])
            try await bus.deleteQueue(named: queue)
            try await bus.deleteQueue(named: deadLetters)
        }
    }
}
