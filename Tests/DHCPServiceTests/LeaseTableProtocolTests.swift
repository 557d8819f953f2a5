import BusCore
import BusTestSupport
import Foundation
import Glibc
import Logging
import Testing

@testable import DHCPService

/// The DHCP conversation, packet by packet, against a lease table (in-memory store, no network).
@Suite("DHCP conversations with the lease table")
struct LeaseTableProtocolTests {
    let server = IPv4Address("10.66.0.1")!
    let configuration = DHCPConfiguration(
        pool: LeasePool(
            first: IPv4Address("10.66.0.10")!, last: IPv4Address("10.66.0.19")!, subnetMask: IPv4Address("255.255.255.0")!,
            serverAddress: IPv4Address("10.66.0.1")!),
        routers: [IPv4Address("10.66.0.1")!], leaseSeconds: 600, nextServer: IPv4Address("10.66.0.2")!, bootFileName: "undionly.kpxe",
        databasePath: ":memory:")
    let mac = MACAddress("02:66:00:00:00:01")!

    func packet(
        _ type: DHCPMessageType, xid: UInt32 = 7, ciaddr: IPv4Address = .zero, requested: IPv4Address? = nil, server: IPv4Address? = nil,
        mac: MACAddress? = nil
    )
        -> DHCPPacket
    {
        var packet = DHCPPacket(op: 1, xid: xid, ciaddr: ciaddr, chaddr: (mac ?? self.mac).bytes)
        packet.setMessageType(type)
        if let requested { packet.setAddress(.requestedIPAddress, to: requested) }
        if let server { packet.setAddress(.serverIdentifier, to: server) }
        packet.setString(.hostName, to: "node")
        return packet
    }

    func table() async throws -> LeaseTable {
        try await LeaseTable.open(configuration: configuration, logger: TestBroker.logger)
    }

    @Test func discoverOfferRequestAck() async throws {
        let table = try await table()
        let offer = try #require(await table.handle(packet(.discover)))
        #expect(offer.messageType == .offer)
        #expect(offer.op == 2)
        #expect(offer.xid == 7)
        #expect(offer.yiaddr == IPv4Address("10.66.0.10"))
        #expect(offer.serverIdentifier == server)
        #expect(offer.leaseTime == 600)
        #expect(offer.uint32(for: .renewalTime) == 300)
        #expect(offer.uint32(for: .rebindingTime) == 525)
        #expect(offer.address(for: .subnetMask) == IPv4Address("255.255.255.0"))
        #expect(offer.addresses(for: .router) == [server])
        #expect(offer.siaddr == IPv4Address("10.66.0.2"))
        #expect(offer.file == "undionly.kpxe")
        #expect(offer.string(for: .bootfileName) == "undionly.kpxe")
        #expect(offer.string(for: .tftpServerName) == "10.66.0.2")
        let ack = try #require(await table.handle(packet(.request, requested: offer.yiaddr, server: server)))
        #expect(ack.messageType == .ack)
        #expect(ack.yiaddr == offer.yiaddr)
        #expect(await table.boundLease(on: offer.yiaddr)?.mac == mac)
    }

    @Test func renewingRebindingAndInitReboot() async throws {
        let table = try await table()
        let offer = try #require(await table.handle(packet(.discover)))
        _ = await table.handle(packet(.request, requested: offer.yiaddr, server: server))
        // RENEWING / REBINDING: ciaddr set, no requested address, no server id.
        let renewed = try #require(await table.handle(packet(.request, ciaddr: offer.yiaddr)))
        #expect(renewed.messageType == .ack)
        #expect(renewed.ciaddr == offer.yiaddr)
        // INIT-REBOOT for the address it holds: ACK; for someone else's: NAK.
        #expect(await table.handle(packet(.request, requested: offer.yiaddr))?.messageType == .ack)
        let other = MACAddress("02:66:00:00:00:02")!
        let nak = try #require(await table.handle(packet(.request, requested: offer.yiaddr, mac: other)))
        #expect(nak.messageType == .nak)
        #expect(nak.yiaddr == .zero)
        // An address outside the pool: NAK.
        #expect(await table.handle(packet(.request, requested: IPv4Address("10.66.1.10")!))?.messageType == .nak)
    }

    @Test func anotherServerChosenWithdrawsTheOffer() async throws {
        let table = try await table()
        let offer = try #require(await table.handle(packet(.discover)))
        #expect(await table.handle(packet(.request, requested: offer.yiaddr, server: IPv4Address("10.66.0.99")!)) == nil)
        #expect(await table.snapshot().leases.isEmpty)
    }

    @Test func releaseDeclineAndInform() async throws {
        let table = try await table()
        let offer = try #require(await table.handle(packet(.discover)))
        _ = await table.handle(packet(.request, requested: offer.yiaddr, server: server))
        #expect(await table.handle(packet(.release, ciaddr: offer.yiaddr)) == nil)
        #expect(await table.boundLease(on: offer.yiaddr) == nil)

        let second = try #require(await table.handle(packet(.discover)))
        #expect(await table.handle(packet(.decline, requested: second.yiaddr)) == nil)
        let third = try #require(await table.handle(packet(.discover, mac: MACAddress("02:66:00:00:00:03")!)))
        #expect(third.yiaddr != second.yiaddr, "a declined address rests")

        let inform = try #require(await table.handle(packet(.inform, ciaddr: IPv4Address("10.66.0.200")!)))
        #expect(inform.messageType == .ack)
        #expect(inform.yiaddr == .zero)
        #expect(inform.leaseTime == nil, "INFORM carries no lease time")
        #expect(inform.addresses(for: .router) == [server])
    }

    @Test func repliesGoToTheRelayTheClientOrBroadcast() {
        var request = packet(.discover)
        var reply = DHCPPacket.reply(to: request, type: .offer, yiaddr: IPv4Address("10.66.0.10")!, serverIdentifier: server)
        #expect(DHCPReplies.destination(of: reply, for: request, configuration: configuration) == (.broadcast, 68))
        request.giaddr = IPv4Address("10.66.5.1")!
        #expect(DHCPReplies.destination(of: reply, for: request, configuration: configuration) == (IPv4Address("10.66.5.1")!, 67))
        request = packet(.request, ciaddr: IPv4Address("10.66.0.10")!)
        reply = DHCPPacket.reply(to: request, type: .ack, yiaddr: IPv4Address("10.66.0.10")!, serverIdentifier: server)
        #expect(DHCPReplies.destination(of: reply, for: request, configuration: configuration) == (IPv4Address("10.66.0.10")!, 68))
    }
}

@Suite("The DHCP server on the wire", .serialized, .timeLimit(.minutes(1)))
struct DHCPServerWireTests {
    @Test("malformed packets are counted and dropped, and the server keeps serving")
    func malformedPackets() async throws {
        let port: UInt16 = 16_768
        let configuration = DHCPConfiguration(
            interface: "lo", listenAddress: IPv4Address("127.0.0.1")!, serverPort: port,
            pool: LeasePool(
                first: IPv4Address("10.67.0.10")!, last: IPv4Address("10.67.0.20")!, subnetMask: IPv4Address("255.255.255.0")!,
                serverAddress: IPv4Address("10.67.0.1")!),
            databasePath: ":memory:")
        try await withDHCPService(configuration) { _, service in
            let relay = try UDPPeer(address: "127.0.0.2", port: port)
            var generator = SeededGenerator(seed: 42)
            var corpus: [[UInt8]] = [[], [1], Array(repeating: 0, count: 235), Array(repeating: 0xff, count: 1400)]
            for length in [240, 300, 548, 1500, 9000] {
                corpus.append((0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
            }
            var valid = DHCPPacket(op: 1, xid: 1, giaddr: IPv4Address("127.0.0.2")!, chaddr: MACAddress("02:67:00:00:00:01")!.bytes)
            valid.setMessageType(.discover)
            let bytes = valid.serialize()
            for cut in stride(from: 0, to: bytes.count, by: 17) { corpus.append(Array(bytes[0..<cut])) }
            corpus.append(Array(bytes[0..<240]) + [53, 200])  // an option that runs past the end
            for datagram in corpus {
                relay.send(datagram, to: "127.0.0.1", port: port)
                // Paced: a burst could overrun the server's receive buffer on a loaded machine.
                try await Task.sleep(for: .milliseconds(2))
            }
            relay.send(bytes, to: "127.0.0.1", port: port)
            let reply = try #require(await relay.receive(timeoutMilliseconds: 5_000), "the server stopped answering")
            let offer = try DHCPPacket.parse(reply)
            #expect(offer.messageType == .offer)
            #expect(offer.xid == 1)
            // Every datagram the codec refuses is counted (an empty one never reaches the server).
            let refused = corpus.filter { !$0.isEmpty && (try? DHCPPacket.parse($0)) == nil }.count
            #expect(refused >= 20)
            try await eventually(timeout: .seconds(5)) { service.malformedPackets == refused }
            #expect(service.malformedPackets == refused, "counted \(service.malformedPackets) of \(refused)")
        }
    }
}

/// A plain UDP socket for wire tests.
final class UDPPeer: Sendable {
    let descriptor: Int32

    init(address: String, port: UInt16) throws {
        descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        let bound = IPv4Address(address)!.withSocketAddress(port: port) { bind(descriptor, $0, $1) }
        guard bound == 0 else { throw TestFailure("cannot bind \(address):\(port)") }
    }

    deinit { close(descriptor) }

    func send(_ bytes: [UInt8], to address: String, port: UInt16) {
        _ = bytes.withUnsafeBytes { buffer in
            IPv4Address(address)!.withSocketAddress(port: port) { sendto(descriptor, buffer.baseAddress, buffer.count, 0, $0, $1) }
        }
    }

    /// Waits on a thread of its own, never on the cooperative pool.
    func receive(timeoutMilliseconds: Int32) async -> [UInt8]? {
        await withCheckedContinuation { continuation in
            Thread { [self] in
                var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, timeoutMilliseconds) > 0 else { return continuation.resume(returning: nil) }
                var buffer = [UInt8](repeating: 0, count: 65_536)
                let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
                continuation.resume(returning: count > 0 ? Array(buffer[0..<count]) : nil)
            }.start()
        }
    }
}
