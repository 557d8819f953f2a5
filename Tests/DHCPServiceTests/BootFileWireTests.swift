import BusCore
import BusTestSupport
import DHCPService
import NodeProtocol
import Testing

/// DHCPService on the wire asks the node registry about a PXE client's MAC and chooses its boot
/// file by client and node. The registry's side of `methods.getNode` is played by the test.
@Suite("DHCP boot files on the wire", .serialized, .timeLimit(.minutes(1)))
struct BootFileWireTests {
    static let noBoot = "02:68:00:00:00:01"
    static let unknown = "02:68:00:00:00:02"
    static let known = "02:68:00:00:00:03"

    @Test("A node with networkBoot false gets no boot file; unknown and known MACs get one by client; `ignore` skips unknown MACs")
    func chosenPerNode() async throws {
        for policy in [UnknownNodePolicy.discover, .ignore] {
            let port: UInt16 = policy == .discover ? 16_770 : 16_771
            var configuration = DHCPConfiguration(
                interface: "lo", listenAddress: IPv4Address("127.0.0.1")!, serverPort: port,
                pool: LeasePool(
                    first: IPv4Address("10.68.0.10")!, last: IPv4Address("10.68.0.20")!, subnetMask: IPv4Address("255.255.255.0")!,
                    serverAddress: IPv4Address("10.68.0.1")!),
                nextServer: IPv4Address("10.68.0.1")!, databasePath: ":memory:")
            configuration.unknownNodes = policy
            try await withDHCPService(configuration) { bus, _ in
                let registry = try await bus.server(for: GetNode.self) { request, _ in
                    let settings: BootSettings? =
                        switch NodeIdentity.normalizedMAC(request.value) {
                        case Self.noBoot: BootSettings(networkBoot: false)
                        case Self.known: nil
                        default: throw ErrorEvent.notFound("No node '\(request.value)'.")
                        }
                    return Node(
                        id: NodeIdentity.nodeId(forMAC: request.value) ?? "", identifiers: [request.value], name: request.value,
                        bootSettings: settings, createdAt: 0, updatedAt: 0)
                }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { await registry.run() }
                    defer { group.cancelAll() }
                    let relay = try UDPPeer(address: "127.0.0.2", port: port)
                    func offer(_ mac: String, xid: UInt32, userClass: String? = nil) async throws -> DHCPPacket {
                        var discover = DHCPPacket(op: 1, xid: xid, giaddr: IPv4Address("127.0.0.2")!, chaddr: MACAddress(mac)!.bytes)
                        discover.setMessageType(.discover)
                        discover.set(.clientArchitecture, bytes: [0, 0])
                        discover.setString(.vendorClassIdentifier, to: "PXEClient:Arch:00000:UNDI:002001")
                        if let userClass { discover.setString(.userClass, to: userClass) }
                        relay.send(discover.serialize(), to: "127.0.0.1", port: port)
                        let reply = try #require(await relay.receive(timeoutMilliseconds: 5_000), "no offer for \(mac)")
                        return try DHCPPacket.parse(reply)
                    }
                    let none = try await offer(Self.noBoot, xid: 1)
                    #expect(none.messageType == .offer, "it still gets an address")
                    #expect(none.string(for: .bootfileName) == nil)
                    #expect(none.siaddr == .zero)
                    let known = try await offer(Self.known, xid: 2)
                    #expect(known.string(for: .bootfileName) == "undionly.kpxe")
                    #expect(known.siaddr == IPv4Address("10.68.0.1"))
                    let ipxe = try await offer(Self.known, xid: 3, userClass: "iPXE")
                    #expect(ipxe.string(for: .bootfileName) == "boot.ipxe")
                    let stranger = try await offer(Self.unknown, xid: 4)
                    #expect(stranger.string(for: .bootfileName) == (policy == .ignore ? nil : "undionly.kpxe"), "\(policy)")
                }
            }
        }
    }
}
