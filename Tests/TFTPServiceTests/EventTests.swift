import BusCore
import BusTestSupport
import NodeProtocol
import Testing

@testable import TFTPService

/// `LookupIpLease` as DHCPService serves it, for a stand-in lease table.
struct LeaseLookup: BusRequest {
    typealias Reply = JSONValue
    static let exchange = Exchange.dhcp
    static let method = "methods.lookupIpLease"
    static let payloadType = "IpAddress"
    var value: String
}

@Suite("TFTP events on the real broker", .serialized, .timeLimit(.minutes(2)))
struct EventTests {
    @Test("a transfer publishes tftp.success.external with its body; a missing file tftp.failure.external")
    func successAndFailure() async throws {
        let root = try await Fixture.make()
        defer { Task { await root.remove() } }
        try await root.write("pxe.bin", pattern(3000))
        try await withTFTPServer(root: root) { _, port, bus in
            let successes = try await bus.subscribe(to: .events, patterns: ["tftp.success.*"], as: TFTPSuccessEvent.self)
            let failures = try await bus.subscribe(to: .events, patterns: ["tftp.failure.*"], as: TFTPFailureEvent.self)
            let got = try await download("pxe.bin", from: port)
            #expect(got.completed)
            let success = try #require(try await collect(successes, count: 1).first)
            #expect(success.routingKey == "tftp.success.external")
            #expect(success.message.file == "pxe.bin")
            #expect(success.message.remoteAddress == "127.0.0.1")
            #expect(success.message.remotePort > 0)
            #expect(success.message.size == 3000)
            #expect(success.message.time >= 0)
            let missing = try await download("missing.bin", from: port)
            #expect(missing.error?.code == 1)
            let failure = try #require(try await collect(failures, count: 1).first)
            #expect(failure.routingKey == "tftp.failure.external")
            #expect(failure.message.file == "missing.bin")
            #expect(failure.message.remoteAddress == "127.0.0.1")
            #expect(failure.message.reason == "file not found")
        }
    }

    @Test("with a lease for the client's address the event names the node")
    func nodeId() async throws {
        let root = try await Fixture.make()
        defer { Task { await root.remove() } }
        try await root.write("pxe.bin", pattern(10))
        try await withTFTPServer(root: root) { _, port, bus in
            let leases = try await bus.server(for: LeaseLookup.self) { request, _ in
                request.value == "127.0.0.1" ? .string("52:54:00:AA:BB:01") : .object([:])
            }
            let serving = Task { await leases.run() }
            defer { serving.cancel() }
            let successes = try await bus.subscribe(to: .events, patterns: ["tftp.success.*"], as: TFTPSuccessEvent.self)
            _ = try await download("pxe.bin", from: port)
            let success = try #require(try await collect(successes, count: 1).first)
            #expect(success.routingKey == "tftp.success.525400aabb01")
        }
    }
}
