import BusCore
import BusTestSupport
import Foundation
import Metrics
import Testing

@testable import TaskGraphRunner

/// The outbox's writer does not wait for the broker: the confirms are settled in batches.
@Suite("The outbox settles what it sent", .timeLimit(.minutes(1)))
struct OutboxSettlingTests {
    @Test("a confirmed message is forgotten; a refused one is due again soon, well before its writer's grace")
    func settles() async throws {
        let store = try await SQLiteGraphStore.open(path: ":memory:")
        try await TestBroker.withBus { bus in
            let exchange = bus.name(of: .scheduler)
            let received = try await bus.subscribe(toExchangeNamed: exchange, patterns: ["test.settle.kept"], as: JSONValue.self)
            let relay = OutboxRelay(bus: bus, store: store, logger: TestBroker.logger, resent: Counter(label: "test.resent"))
            let forgetting = Task { await relay.forgetSettled() }
            defer { forgetting.cancel() }
            var change = try GraphStoreTests().begun(target: nil)
            func message(_ key: String) -> OutboxMessage {
                OutboxMessage(
                    id: UUID().uuidString, graphId: change.instance.id, exchange: exchange, routingKey: key, type: "Object",
                    body: Array("{}".utf8), persistent: true, mandatory: true, onlyWhileGraphActive: false)
            }
            // No queue takes the second: mandatory, the broker refuses it.
            let (kept, refused) = (message("test.settle.kept"), message("test.settle.nowhere"))
            change.outbox = [kept, refused]
            try await store.create(change)
            let started = ContinuousClock.now
            relay.send(change.outbox)
            _ = try await collect(received, count: 1)
            // Without the settling, the refused message would wait out the grace (5 s) first.
            try await eventually(timeout: .seconds(3)) {
                try await store.takeDueMessages(limit: 10, lease: .seconds(30)).map(\.id) == [refused.id]
            }
            #expect(ContinuousClock.now - started < OutboxMessage.grace)
            // The confirmed one is gone: made due, it is still not there to take.
            try await store.postponeMessage(kept.id, by: .zero)
            #expect(try await store.takeDueMessages(limit: 10, lease: .seconds(30)).isEmpty)
        }
    }
}
