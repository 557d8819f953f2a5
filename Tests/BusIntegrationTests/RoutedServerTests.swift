import BusCore
import BusTestSupport
import Foundation
import Testing

@Suite("Routing keys bound to a server at run time", .timeLimit(.minutes(2)))
struct RoutedServerTests {
    @Test("a key is routed to the server only while bound, counted per holder, and kept across a reconnect")
    func bindAndUnbind() async throws {
        try await TestBroker.withBus { bus in
            let exchange = bus.name(of: .dhcp)
            let server = try await bus.routedServer(exchangeNamed: exchange, queueBase: "\(exchange):routed-test", method: "methods.routed")
            {
                body, context in
                ServedReply(body: Array("{\"value\":\"\(context.routingKey)\"}".utf8))
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await server.run() }
                defer { server.cancel() }
                let key = "methods.routed.\(UUID().uuidString)"
                func call() async throws -> String {
                    let reply = try await bus.callRaw(
                        exchangeNamed: exchange, routingKey: key, body: Array("{}".utf8), timeout: .milliseconds(500))
                    return String(decoding: reply.body, as: UTF8.self)
                }
                func unanswered() async -> Bool {
                    do {
                        _ = try await call()
                        return false
                    } catch let error as BusError {
                        return error.code == .timeout
                    } catch {
                        return false
                    }
                }

                #expect(await unanswered(), "nothing is bound yet")
                try await server.bind(routingKeys: [key])
                #expect(try await call().contains(key))

                // A second holder of the key: the first one's unbind leaves it bound.
                try await server.bind(routingKeys: [key])
                try await server.unbind(routingKeys: [key])
                #expect(try await call().contains(key))

                // The bindings are re-created on the queue of the next connection.
                bus.simulateConnectionLoss()
                try await bus.waitUntilConnected(timeout: .seconds(30))
                let reply = try await retrying { try await call() }
                #expect(reply.contains(key))

                try await server.unbind(routingKeys: [key])
                #expect(await unanswered(), "the last holder unbound the key")

                // An unbound key stays unbound after a reconnect, while a bound one is answered again.
                let other = "methods.routed.\(UUID().uuidString)"
                try await server.bind(routingKeys: [other])
                bus.simulateConnectionLoss()
                try await bus.waitUntilConnected(timeout: .seconds(30))
                let answered = try await retrying {
                    try await bus.callRaw(exchangeNamed: exchange, routingKey: other, body: Array("{}".utf8), timeout: .milliseconds(500))
                }
                #expect(String(decoding: answered.body, as: UTF8.self).contains(other))
                #expect(await unanswered())
            }
        }
    }
}
