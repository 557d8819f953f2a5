import ArgumentParser
import BusCore
import DHCPService
import Foundation
import Glibc
import Logging

/// A /14 pool: room for 100,000 leases and more.
private let benchPool = LeasePool(
    first: IPv4Address("10.64.0.1")!, last: IPv4Address("10.67.255.254")!, subnetMask: IPv4Address("255.252.0.0")!,
    serverAddress: IPv4Address("10.64.0.0")!)

private func benchMAC(_ index: Int) -> MACAddress {
    MACAddress(bytes: [0x02, 0xbe, UInt8(index >> 24 & 0xff), UInt8(index >> 16 & 0xff), UInt8(index >> 8 & 0xff), UInt8(index & 0xff)])!
}

/// Runs a DHCPService with an in-memory store on a bus of its own for `body`.
private func withBenchDHCP<Result: Sendable>(
    _ configuration: DHCPConfiguration, busConfiguration: BusConfiguration,
    _ body: @Sendable (MessageBus, DHCPService) async throws -> Result
) async throws -> Result {
    try await MessageBus.withBus(configuration: busConfiguration, logger: benchLogger) { bus in
        try await bus.waitUntilConnected()
        let service = DHCPService(bus: bus, configuration: configuration, logger: benchLogger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await service.run() }
            defer { group.cancelAll() }
            await service.waitUntilReady()
            return try await body(bus, service)
        }
    }
}

struct LeaseRPCBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leases", abstract: "Lease RPCs (lookupIpLease) per second against a table of --leases leases.")

    @Option(help: "Leases in the table") var leases = 1_000
    @Option(help: "Total calls") var calls = 20_000
    @Option(help: "Calls in flight") var concurrency = 32

    func run() async throws {
        let busConfiguration = try benchConfiguration("rackbus-bench-leases")
        let dhcp = DHCPConfiguration(pool: benchPool, databasePath: ":memory:")
        let (total, inFlight, count) = (calls, concurrency, leases)
        try await withBenchDHCP(dhcp, busConfiguration: busConfiguration) { _, service in
            let table = service.leaseTable!
            let seeded = (0..<count).map { index in
                Lease(
                    mac: benchMAC(index), ip: benchPool.first.advanced(by: index)!, state: .bound, expiresAt: Date() + 3600,
                    leaseSeconds: 3600)
            }
            try await table.importBound(seeded)
            // Calls from a separate connection, as another service would make them.
            try await MessageBus.withBus(configuration: busConfiguration, logger: benchLogger) { client in
                try await client.waitUntilConnected()
                for index in 0..<200 { _ = try await client.call(LookupIpLease(ip: seeded[index % count].ip.description)) }
                let started = ContinuousClock.now
                let latencies = try await measureCalls(total: total, concurrency: inFlight) { _ in
                    let lease = seeded[Int.random(in: 0..<count)]
                    let reply = try await client.call(LookupIpLease(ip: lease.ip.description))
                    precondition(reply.mac == lease.mac.description, "wrong lease")
                }
                Figures(
                    caseName: "lease-rpc", count: total, elapsed: ContinuousClock.now - started, latencies: latencies,
                    extra: ["leases": "\(await table.leaseCount)", "concurrency": "\(inFlight)"]
                ).printLine()
            }
        }
    }
}

struct DHCPExchangeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dhcp",
        abstract: "DISCOVER→OFFER→REQUEST→ACK exchanges per second from a load generator acting as a relay on loopback.")

    @Option(help: "Exchanges (one new client MAC each)") var exchanges = 5_000
    @Option(help: "Exchanges in flight") var concurrency = 32
    @Option(help: "UDP port for the server (the relay uses the same port on 127.0.0.2)") var port: UInt16 = 16_767

    func run() async throws {
        let busConfiguration = try benchConfiguration("rackbus-bench-dhcp")
        let database = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-bench-\(UUID().uuidString).sqlite").path
        defer {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: database + suffix) }
        }
        // Leases are stored in SQLite as in production.
        let dhcp = DHCPConfiguration(
            interface: "lo", listenAddress: IPv4Address("127.0.0.1")!, serverPort: port, pool: benchPool, leaseSeconds: 3600,
            databasePath: database)
        let (total, inFlight, port) = (exchanges, concurrency, port)
        try await withBenchDHCP(dhcp, busConfiguration: busConfiguration) { _, _ in
            let generator = try RelayLoadGenerator(port: port)
            let result = try await generator.run(exchanges: total, concurrency: inFlight)
            Figures(
                caseName: "dhcp-exchange", count: result.completed, elapsed: result.elapsed, latencies: result.latencies,
                extra: ["exchanges": "\(total)", "concurrency": "\(inFlight)", "lost": "\(result.lost)"]
            ).printLine()
        }
    }
}

/// Plays many DHCP clients behind a relay (giaddr 127.0.0.2), so replies come back by unicast on
/// loopback. Runs its socket loop on a thread of its own.
final class RelayLoadGenerator: Sendable {
    struct Result: Sendable {
        var completed: Int
        var lost: Int
        var elapsed: Duration
        var latencies: [Duration]
    }

    private let descriptor: Int32
    private let port: UInt16

    init(port: UInt16) throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        let bound = IPv4Address("127.0.0.2")!.withSocketAddress(port: port) { bind(fd, $0, $1) }
        guard fd >= 0, bound == 0 else { throw ValidationError("cannot bind the relay socket on 127.0.0.2:\(port)") }
        descriptor = fd
        self.port = port
    }

    deinit { close(descriptor) }

    func run(exchanges: Int, concurrency: Int) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            Thread { [self] in continuation.resume(returning: loop(exchanges: exchanges, concurrency: concurrency)) }.start()
        }
    }

    private func loop(exchanges: Int, concurrency: Int) -> Result {
        var started: [UInt32: ContinuousClock.Instant] = [:]
        var latencies: [Duration] = []
        var next = 0
        var lost = 0
        let begin = ContinuousClock.now
        func discover() {
            let index = next
            next += 1
            var packet = DHCPPacket(
                op: 1, htype: 1, hlen: 6, xid: UInt32(index + 1), giaddr: IPv4Address("127.0.0.2")!, chaddr: benchMAC(index).bytes)
            packet.setMessageType(.discover)
            started[packet.xid] = .now
            send(packet)
        }
        for _ in 0..<min(concurrency, exchanges) { discover() }
        var buffer = [UInt8](repeating: 0, count: 2048)
        var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        while !started.isEmpty {
            guard poll(&poller, 1, 2000) > 0 else {
                // Nothing for two seconds: count what is outstanding as lost.
                lost += started.count
                break
            }
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            guard count > 0, let reply = try? DHCPPacket.parse(Array(buffer[0..<count])) else { continue }
            switch reply.messageType {
            case .offer:
                var request = DHCPPacket(op: 1, htype: 1, hlen: 6, xid: reply.xid, giaddr: reply.giaddr, chaddr: reply.chaddr)
                request.setMessageType(.request)
                request.setAddress(.requestedIPAddress, to: reply.yiaddr)
                if let server = reply.serverIdentifier { request.setAddress(.serverIdentifier, to: server) }
                send(request)
            case .ack:
                if let start = started.removeValue(forKey: reply.xid) { latencies.append(.now - start) }
                if next < exchanges { discover() }
            case .nak:
                started[reply.xid] = nil
                lost += 1
                if next < exchanges { discover() }
            default:
                continue
            }
        }
        return Result(completed: latencies.count, lost: lost, elapsed: .now - begin, latencies: latencies)
    }

    private func send(_ packet: DHCPPacket) {
        let bytes = packet.serialize()
        _ = bytes.withUnsafeBytes { buffer in
            IPv4Address("127.0.0.1")!.withSocketAddress(port: port) { sendto(descriptor, buffer.baseAddress, buffer.count, 0, $0, $1) }
        }
    }
}
