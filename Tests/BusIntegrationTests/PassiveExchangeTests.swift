import BusCore
import BusTestSupport
import Foundation
import Testing

@Suite("exchanges=passive: a bus that only checks the nine exchanges", .timeLimit(.minutes(2)))
struct PassiveExchangeTests {
    @Test("Without the exchanges it still connects, and a publish fails with the broker's 404; once declared, it works")
    func checksInsteadOfDeclaring() async throws {
        let prefix = TestBroker.uniquePrefix()
        let passive = try {
            var configuration = try TestBroker.configuration(prefix: prefix)
            configuration.declaresExchanges = false
            return configuration
        }()
        try await MessageBus.withBus(configuration: passive, logger: TestBroker.logger) { bus in
            try await bus.waitUntilConnected(timeout: .seconds(30))
            let refused = await #expect(throws: BusError.self) {
                try await bus.publishConfirmed(["n": 1], to: .events, routingKey: "passive.test")
            }
            #expect(refused?.replyCode == 404, "\(String(describing: refused))")
            #expect(try await !bus.exchangeExists(named: bus.name(of: .events)), "the passive bus declared an exchange")
        }
        // A bus that declares (the administrator's) creates them; the passive one then works.
        try await TestBroker.withBus(try TestBroker.configuration(prefix: prefix)) { declaring in
            try await declaring.waitUntilConnected(timeout: .seconds(30))
            try await MessageBus.withBus(configuration: passive, logger: TestBroker.logger) { bus in
                try await bus.waitUntilConnected(timeout: .seconds(30))
                let events = try await bus.subscribe(to: .events, patterns: ["passive.#"], as: [String: Int].self)
                try await bus.publishConfirmed(["n": 2], to: .events, routingKey: "passive.test")
                let received = try await collect(events, count: 1, timeout: .seconds(10))
                #expect(received.first?.message == ["n": 2])
            }
        }
    }
}
