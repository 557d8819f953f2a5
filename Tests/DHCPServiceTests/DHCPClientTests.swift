import BusCore
import BusTestSupport
import Foundation
import Testing

@testable import DHCPService

/// A real DHCP client (busybox udhcpc) in a network namespace, against the real server.
@Suite("DHCP with a real client in a network namespace", .serialized, .timeLimit(.minutes(3)))
struct DHCPClientTests {
    func configuration(_ namespace: NetworkNamespace, subnet: Int, first: Int = 100, last: Int = 120, database: String = ":memory:")
        -> DHCPConfiguration
    {
        DHCPConfiguration(
            interface: namespace.hostInterface,
            pool: LeasePool(
                first: IPv4Address("10.55.\(subnet).\(first)")!, last: IPv4Address("10.55.\(subnet).\(last)")!,
                subnetMask: IPv4Address("255.255.255.0")!, serverAddress: IPv4Address(namespace.serverAddress)!),
            routers: [IPv4Address(namespace.serverAddress)!], dnsServers: [IPv4Address("10.55.\(subnet).53")!], domainName: "lab.rackbus",
            leaseSeconds: 600, nextServer: IPv4Address(namespace.serverAddress)!, bootFileName: "monorail.ipxe", databasePath: database)
    }

    @Test("the client gets an address from the pool; the table, lookupIpLease and a bind event show it")
    func clientGetsALease() async throws {
        try await NetworkNamespace.with(subnet: 1) { namespace in
            let mac = "02:5e:00:00:01:01"
            try await namespace.setMAC(mac)
            try await withDHCPService(configuration(namespace, subnet: 1)) { bus, _ in
                let events = try await bus.subscribe(to: .events, patterns: ["dhcp.bind.success.*"], as: DHCPBindEvent.self)
                let lease = try #require(try await namespace.requestLease(hostname: "node-one"))
                let ip = try #require(lease["ip"])
                let address = try #require(IPv4Address(ip))
                #expect(address >= IPv4Address("10.55.1.100")! && address <= IPv4Address("10.55.1.120")!)
                #expect(lease["subnet"] == "255.255.255.0")
                #expect(lease["router"] == namespace.serverAddress)
                #expect(lease["dns"] == "10.55.1.53")
                #expect(lease["domain"] == "lab.rackbus")
                #expect(lease["serverid"] == namespace.serverAddress)
                #expect(lease["lease"] == "600")
                #expect(lease["siaddr"] == namespace.serverAddress, "PXE next-server")
                #expect(lease["boot_file"] == "monorail.ipxe", "PXE boot file")

                let table = try await bus.call(PeekLeaseTable())
                #expect(table.leases[mac]?.ipAddress == ip)
                #expect(table.leases[mac]?.hostname == "node-one")
                #expect(try await bus.call(LookupIpLease(ip: ip)).mac == mac)

                let event = try await collect(events, count: 1)[0]
                #expect(event.routingKey == "dhcp.bind.success.025e00000101")
                #expect(event.message.mac == mac)
                #expect(event.message.ip == ip)
                #expect(event.message.hostname == "node-one")
                #expect(event.message.leaseExpiresAt > Int64(Date().timeIntervalSince1970 * 1000))
            }
        }
    }

    @Test("a pinned MAC gets its pinned address")
    func pinnedMAC() async throws {
        try await NetworkNamespace.with(subnet: 2) { namespace in
            let mac = "02:5e:00:00:02:01"
            try await namespace.setMAC(mac)
            try await withDHCPService(configuration(namespace, subnet: 2)) { bus, _ in
                _ = try await bus.call(PinIp(mac: mac, ip: "10.55.2.117"))
                let lease = try #require(try await namespace.requestLease(requestedIP: "10.55.2.101"))
                #expect(lease["ip"] == "10.55.2.117")
            }
        }
    }

    @Test("after removeLease the address can go to another client")
    func removedLeaseIsReused() async throws {
        try await NetworkNamespace.with(subnet: 3) { namespace in
            // A pool of one address makes the hand-over visible.
            try await withDHCPService(configuration(namespace, subnet: 3, first: 100, last: 100)) { bus, _ in
                try await namespace.setMAC("02:5e:00:00:03:01")
                let first = try #require(try await namespace.requestLease())
                #expect(first["ip"] == "10.55.3.100")
                try await namespace.setMAC("02:5e:00:00:03:02")
                #expect(try await namespace.requestLease(attempts: 2) == nil, "the only address is taken")
                let removed = try await bus.call(RemoveLease(mac: "02:5e:00:00:03:01"))
                #expect(removed.lease?.ipAddress == "10.55.3.100")
                let second = try #require(try await namespace.requestLease())
                #expect(second["ip"] == "10.55.3.100")
                #expect(try await bus.call(LookupIpLease(ip: "10.55.3.100")).mac == "02:5e:00:00:03:02")
            }
        }
    }

    @Test("leases survive a service restart, and are not handed to another client")
    func leasesSurviveRestart() async throws {
        let database = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-dhcp-\(UUID().uuidString).sqlite").path
        defer {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: database + suffix) }
        }
        try await NetworkNamespace.with(subnet: 4) { namespace in
            let settings = configuration(namespace, subnet: 4, first: 100, last: 101, database: database)
            try await namespace.setMAC("02:5e:00:00:04:01")
            let before = try await withDHCPService(settings) { _, _ in
                try #require(try await namespace.requestLease())["ip"]
            }
            try await withDHCPService(settings) { bus, _ in
                let table = try await bus.call(PeekLeaseTable())
                #expect(table.leases["02:5e:00:00:04:01"]?.ipAddress == before)
                // Another client gets the other address, never the stored one.
                try await namespace.setMAC("02:5e:00:00:04:02")
                let other = try #require(try await namespace.requestLease())
                #expect(other["ip"] != before)
                // The first client comes back (init-reboot) and keeps its address.
                try await namespace.setMAC("02:5e:00:00:04:01")
                let again = try #require(try await namespace.requestLease(requestedIP: before))
                #expect(again["ip"] == before)
            }
        }
    }
}
