import BusTestSupport
import Foundation
import Glibc
import Testing

@testable import BusCore

@Suite("A bus that has shut down is freed")
struct EngineLifetimeTests {
    /// A port on 127.0.0.1 where nothing listens: the bus keeps trying, as with a broker that is down.
    static func deadPort() throws -> Int {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0 }
        }
        guard bound else { throw TestFailure("no free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @Test("its engine, with the I/O thread's wake-up pipe, goes once the bus is gone")
    func engineIsFreed() async throws {
        let configuration = try BusConfiguration(url: "amqp://guest:guest@127.0.0.1:\(try Self.deadPort())/")
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
