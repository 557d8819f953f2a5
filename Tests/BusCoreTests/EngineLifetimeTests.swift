import BusTestSupport
import Foundation
import Testing

@testable import BusCore

@Suite("A bus that has shut down is freed")
struct EngineLifetimeTests {
    @Test("its engine, with the I/O thread's wake-up pipe, goes once the bus is gone")
    func engineIsFreed() async throws {
        let configuration = try BusConfiguration(url: "amqp://guest:guest@127.0.0.1:\(try deadLocalPort())/")
        struct Weak: Sendable { weak var engine: BusEngine? }
        let seen = Locked(Weak())
        try await MessageBus.withBus(configuration: configuration, logger: TestBroker.logger) { bus in
            seen.withLock { $0.engine = bus.engine }
            try await Task.sleep(for: .milliseconds(200))
        }
        // The thread drops its closure as it ends, a moment after run() has returned.
        try await eventually(timeout: .seconds(5)) { seen.withLock { $0.engine == nil } }
    }
}
