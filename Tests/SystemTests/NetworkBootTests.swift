import BusCore
import BusTestSupport
import EventsLogger
import Foundation
import NodeProtocol
import TaskGraphRunner
import Testing

/// A real virtual machine network-boots through RackBus: qemu with Debian's iPXE ROM on a tap
/// device, and `rackbus up` serving DHCP, TFTP and HTTP on the other end of its segment. The
/// machine gets a lease, loads `boot.ipxe` over TFTP, chains to `profiles` over HTTP, is
/// registered and discovered by `Graph.Discovery` (its SMBIOS values become a catalog), matches
/// a SKU, and then boots from its local disk.
@Suite("Network boot: a VM PXE-boots, is discovered and gets its SKU", .serialized, .timeLimit(.minutes(5)))
struct NetworkBootTests {
    @Test("The whole boot story, in order, on the bus and in `rackbus events --node`")
    func virtualMachineBootsThroughRackBus() async throws {
        try await VirtualMachineNetwork.with(subnet: 31) { network in
            let mac = "52:54:00:31:00:01"
            let nodeId = "525400310001"
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-netboot-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: scratch) }
            let apiPort = try freeTCPPort()
            let prefix = "nb\(UUID().uuidString.prefix(6).lowercased())"
            let up = ServiceProcess(
                arguments: [
                    "--url", TestBroker.url, "--prefix", prefix,
                    "--services", "dhcp,tftp,http,nodes,taskgraph,scheduler,eventslogger",
                    "--dhcp-interface", network.hostInterface, "--dhcp-server-address", network.serverAddress,
                    "--dhcp-pool", "\(network.subnetPrefix).100-\(network.subnetPrefix).120",
                    "--dhcp-database", ":memory:", "--taskgraph-database", ":memory:", "--events-database", ":memory:",
                    "--nodes-database", ":memory:",
                    "--tftp-root", scratch.appendingPathComponent("tftp").path, "--tftp-listen", "\(network.serverAddress):69",
                    "--http-listen", "\(network.serverAddress):9080", "--http-api-listen", "127.0.0.1:\(apiPort)",
                ],
                logFile: scratch.appendingPathComponent("up.log"),
                environment: [
                    "RACKBUS_DHCP_SUBNET_MASK": "255.255.255.0",
                    "RACKBUS_DHCP_NEXT_SERVER": network.serverAddress,
                    "RACKBUS_BOOT_HTTP_URL": "http://\(network.serverAddress):9080",
                    "RACKBUS_HTTP_STATIC_ROOT": scratch.appendingPathComponent("static").path,
                ])
            try up.start()
            // TestBroker.withBus holds the broker lock's shared side, so no restart test runs meanwhile.
            try await TestBroker.withBus(try TestBroker.configuration(prefix: prefix)) { bus in
                do {
                    _ = try await retryingUntilAnswered(within: .seconds(60)) { try await bus.call(ListNodes(), timeout: .seconds(1)) }
                    _ = try await retryingUntilAnswered(within: .seconds(30)) {
                        try await bus.call(GetTaskGraphLibrary(), timeout: .seconds(1))
                    }
                    // An operator defines the SKU with the CLI, from a file.
                    let skuFile = scratch.appendingPathComponent("sku.json")
                    try Data(
                        #"{"name": "virtual-rack-1", "rules": [{"path": "smbios.manufacturer", "equals": "RackBus Labs"}, {"path": "smbios.product", "contains": "Rack 1"}]}"#
                            .utf8
                    ).write(to: skuFile)
                    try await TestBroker.run(
                        ServiceProcess.executable.path, ["sku", "define", skuFile.path, "--url", TestBroker.url, "--prefix", prefix])

                    let story = try await bus.subscribe(toNode: nodeId)
                    let vm = try network.bootVirtualMachine(
                        mac: mac, smbios: ["manufacturer": "RackBus Labs", "product": "Virtual Rack 1", "serial": "VM-0031"])
                    do {
                        // Discovered, matched, and then sent to its disk: the boot-local profile says so on the console.
                        try await vm.waitForConsole("RackBus: node \(nodeId) boots from its local disk", timeout: .seconds(180))
                        #expect(vm.console.contains("RackBus: discovering node \(nodeId)"))
                        // A machine sent to a disk it does not have goes back to its firmware; it does not ask again.
                        try await Task.sleep(for: .seconds(6))
                        #expect(vm.console.components(separatedBy: "boots from its local disk").count == 2, "\(vm.console.suffix(1500))")
                        await vm.stop()
                    } catch {
                        await vm.stop()
                        throw error
                    }

                    // The node as the registry knows it: identifiers, the SMBIOS catalog, the SKU.
                    let node = try await bus.call(GetNode(nodeId))
                    #expect(node.identifiers == [mac])
                    let smbios = try #require(node.catalog("smbios"))
                    #expect(smbios.data["manufacturer"] == "RackBus Labs")
                    #expect(smbios.data["product"] == "Virtual Rack 1")
                    #expect(smbios.data["serial"] == "VM-0031")
                    #expect(node.sku == "virtual-rack-1")

                    // The story on the bus, in order.
                    let keys = try await Self.routingKeys(
                        of: story,
                        until: { keys in
                            keys.contains { $0.hasPrefix("graph.finished.") } && keys.last == "http.response.\(nodeId)"
                                && keys.filter { $0 == "http.response.\(nodeId)" }.count >= 3
                        })
                    try Self.expectStory(keys, nodeId: nodeId)

                    // The graph succeeded.
                    let graphs = try await bus.call(GetActiveTaskGraphs(filter: GraphFilter(target: nodeId)))
                    #expect(graphs.isEmpty, "the discovery graph is over")

                    // And `rackbus events --node` tells the same story from the journal.
                    var journal: [String] = []
                    try await eventually(timeout: .seconds(20), pollingEvery: .milliseconds(500)) {
                        let output = try await TestBroker.run(
                            ServiceProcess.executable.path,
                            ["events", "--node", nodeId, "--json", "--url", TestBroker.url, "--prefix", prefix])
                        journal = output.split(separator: "\n").compactMap { line in
                            (try? JSONDecoder().decode(JSONValue.self, from: Data(line.utf8)))?["routingKey"]?.stringValue
                        }
                        return journal.contains { $0.hasPrefix("graph.finished.") } && journal.contains("sku.assigned.\(nodeId)")
                    }
                    try Self.expectStory(journal, nodeId: nodeId)
                } catch {
                    let log = (try? String(contentsOf: scratch.appendingPathComponent("up.log"), encoding: .utf8)) ?? ""
                    await up.stop()
                    Issue.record("rackbus up's log ends with:\n\(log.suffix(4000))")
                    throw error
                }
                await up.stop()
            }
        }
    }

    /// The routing keys of a subscription's deliveries until `done` says so, or 20 s have passed.
    static func routingKeys(of story: Subscription<NodeEvent>, until done: @escaping @Sendable ([String]) -> Bool) async throws -> [String]
    {
        try await withThrowingTaskGroup(of: [String]?.self) { group in
            group.addTask {
                var keys: [String] = []
                for await event in story {
                    keys.append(event.routingKey)
                    if done(keys) { return keys }
                }
                return keys
            }
            group.addTask {
                try await Task.sleep(for: .seconds(20))
                return nil
            }
            defer { group.cancelAll() }
            guard let keys = try await group.next() ?? nil else { throw TestFailure("the node's story did not complete within 20 s") }
            return keys
        }
    }

    /// The order a booting machine's events must come in.
    static func expectStory(_ keys: [String], nodeId: String) throws {
        func first(_ predicate: (String) -> Bool) throws -> Int {
            guard let index = keys.firstIndex(where: predicate) else { throw TestFailure("missing from the story: \(keys)") }
            return index
        }
        let bind = try first { $0 == "dhcp.bind.success.\(nodeId)" }
        let tftp = try first { $0 == "tftp.success.\(nodeId)" }
        let firstHTTP = try first { $0 == "http.response.\(nodeId)" }
        let discovered = try first { $0 == "node.discovered.\(nodeId)" }
        let started = try first { $0.hasPrefix("graph.started.") }
        let sku = try first { $0 == "sku.assigned.\(nodeId)" }
        let finished = try first { $0.hasPrefix("graph.finished.") }
        let lastHTTP = try #require(keys.lastIndex(of: "http.response.\(nodeId)"))
        #expect(bind < tftp, "\(keys)")
        #expect(tftp < firstHTTP, "\(keys)")
        #expect(tftp < discovered, "\(keys)")
        #expect(discovered < started, "\(keys)")
        #expect(started < sku, "\(keys)")
        #expect(sku < finished, "\(keys)")
        #expect(finished < lastHTTP, "the machine asks again after discovery: \(keys)")
    }
}

/// A TCP port nobody listens on right now.
func freeTCPPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr = in_addr(s_addr: inet_addr("127.0.0.1"))
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw TestFailure("no free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}
