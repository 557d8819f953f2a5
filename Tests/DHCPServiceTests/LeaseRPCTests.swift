import BusCore
import BusTestSupport
import Foundation
import Logging
import Testing

@testable import DHCPService

/// Runs a bus and a DHCPService (lease RPCs; the UDP server too when `configuration` names an
/// interface) for the duration of `body`.
func withDHCPService<Result: Sendable>(
    _ configuration: DHCPConfiguration, busConfiguration: BusConfiguration? = nil,
    _ body: @Sendable (MessageBus, DHCPService) async throws -> Result
) async throws -> Result {
    let busConfiguration = try busConfiguration ?? TestBroker.configuration()
    return try await TestBroker.withBus(busConfiguration) { bus in
        let service = DHCPService(bus: bus, configuration: configuration, logger: TestBroker.logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await service.run() }
            defer { group.cancelAll() }
            await service.waitUntilReady()
            return try await body(bus, service)
        }
    }
}

let testPool = LeasePool(
    first: IPv4Address("10.44.0.10")!, last: IPv4Address("10.44.0.20")!, subnetMask: IPv4Address("255.255.255.0")!,
    serverAddress: IPv4Address("10.44.0.1")!)

func lease(_ mac: String, _ ip: String) -> Lease {
    Lease(mac: MACAddress(mac)!, ip: IPv4Address(ip)!, state: .bound, hostname: "host-\(ip)", expiresAt: Date() + 600, leaseSeconds: 600)
}

@Suite("The nine lease RPCs over the real broker", .timeLimit(.minutes(2)))
struct LeaseRPCTests {
    let configuration = DHCPConfiguration(pool: testPool, databasePath: ":memory:")

    @Test("lookupIpLease, ipInRange and peekLeaseTable answer from the table")
    func queries() async throws {
        try await withDHCPService(configuration) { bus, service in
            try await service.leaseTable!.importBound([lease("02:00:00:00:01:01", "10.44.0.11")])

            let found = try await bus.call(LookupIpLease(ip: "10.44.0.11"))
            #expect(found.mac == "02:00:00:00:01:01")
            let raw = try await bus.callRaw(
                exchangeNamed: bus.name(of: .dhcp), routingKey: LookupIpLease.method, body: Array(#"{"value":"10.44.0.11"}"#.utf8),
                type: "IpAddress")
            #expect(raw.type == "MacAddress", "RackHD replies MacAddress when it finds a lease")
            #expect(String(decoding: raw.body, as: UTF8.self) == #"{"value":"02:00:00:00:01:01"}"#)
            let missing = try await bus.callRaw(
                exchangeNamed: bus.name(of: .dhcp), routingKey: LookupIpLease.method, body: Array(#"{"value":"10.44.0.12"}"#.utf8),
                type: "IpAddress")
            #expect(missing.type == "Result")
            #expect(String(decoding: missing.body, as: UTF8.self) == #"{"value":{}}"#)

            #expect(try await bus.call(IpInRange(ip: "10.44.0.20")) == true)
            #expect(try await bus.call(IpInRange(ip: "10.44.0.21")) == false)

            let table = try await bus.call(PeekLeaseTable())
            let record = try #require(table.leases["02:00:00:00:01:01"])
            #expect(record.ipAddress == "10.44.0.11")
            #expect(record.boundFlag)
            #expect(record.hostname == "host-10.44.0.11")
            #expect(table.pinned.isEmpty)
        }
    }

    @Test("removeLease and removeLeaseByIp return the lease, or {} for an unknown one")
    func removals() async throws {
        try await withDHCPService(configuration) { bus, service in
            try await service.leaseTable!.importBound([lease("02:00:00:00:02:01", "10.44.0.11"), lease("02:00:00:00:02:02", "10.44.0.12")])
            let removed = try await bus.call(RemoveLease(mac: "02:00:00:00:02:01"))
            #expect(removed.lease?.ipAddress == "10.44.0.11")
            let byIP = try await bus.call(RemoveLeaseByIp(ip: "10.44.0.12"))
            #expect(byIP.lease?.mac == "02:00:00:00:02:02")
            let unknown = try await bus.callRaw(
                exchangeNamed: bus.name(of: .dhcp), routingKey: RemoveLease.method, body: Array(#"{"value":"02:00:00:00:02:01"}"#.utf8),
                type: "MacAddress")
            #expect(String(decoding: unknown.body, as: UTF8.self) == #"{"value":{}}"#)
            #expect(try await bus.call(PeekLeaseTable()).leases.isEmpty)
        }
    }

    @Test("pinMac, unpinMac, pinIp and unpinIp keep pins, and refuse bad ones")
    func pins() async throws {
        try await withDHCPService(configuration) { bus, service in
            try await service.leaseTable!.importBound([lease("02:00:00:00:03:01", "10.44.0.11")])
            let pinned = try await bus.call(PinMac(mac: "02:00:00:00:03:01"))
            #expect(pinned.ipAddress == "10.44.0.11")
            #expect(
                try await bus.call(PinIp(mac: "02:00:00:00:03:02", ip: "10.44.0.15"))
                    == PinIp.Pin(mac: "02:00:00:00:03:02", ip: "10.44.0.15"))
            let table = try await bus.call(PeekLeaseTable())
            #expect(table.pinned == ["02:00:00:00:03:01": "10.44.0.11", "02:00:00:00:03:02": "10.44.0.15"])

            let outside = await #expect(throws: BusError.self) { _ = try await bus.call(PinIp(mac: "02:00:00:00:03:03", ip: "10.44.1.1")) }
            #expect(outside?.status == 400)
            let taken = await #expect(throws: BusError.self) { _ = try await bus.call(PinIp(mac: "02:00:00:00:03:03", ip: "10.44.0.15")) }
            #expect(taken?.status == 409)
            #expect(taken?.remote?.name == "ConflictError")
            let leased = await #expect(throws: BusError.self) { _ = try await bus.call(PinIp(mac: "02:00:00:00:03:03", ip: "10.44.0.11")) }
            #expect(leased?.status == 409)
            let noLease = await #expect(throws: BusError.self) { _ = try await bus.call(PinMac(mac: "02:00:00:00:03:09")) }
            #expect(noLease?.status == 404)

            #expect(try await bus.call(UnpinMac(mac: "02:00:00:00:03:01")).ip == "10.44.0.11")
            #expect(try await bus.call(UnpinMac(mac: "02:00:00:00:03:01")).ip == nil)
            #expect(try await bus.call(UnpinIp(ip: "10.44.0.15")).mac == "02:00:00:00:03:02")
            #expect(try await bus.call(UnpinIp(ip: "10.44.0.15")).mac == nil)
            #expect(try await bus.call(PeekLeaseTable()).pinned.isEmpty)
        }
    }

    @Test("invalid MACs and IPs get a 400 ErrorEvent, and the service keeps answering")
    func badInput() async throws {
        try await withDHCPService(configuration) { bus, _ in
            for bad in ["10.44.0.256", "10.44.0", "abc", ""] {
                let error = await #expect(throws: BusError.self) { _ = try await bus.call(LookupIpLease(ip: bad)) }
                #expect(error?.status == 400, "\(bad)")
                #expect(error?.remote?.message.contains("Invalid IP address") == true)
            }
            for bad in ["00-11-22-33-44-55", "00:11:22:33:44", "zz:11:22:33:44:55"] {
                let error = await #expect(throws: BusError.self) { _ = try await bus.call(RemoveLease(mac: bad)) }
                #expect(error?.status == 400, "\(bad)")
            }
            // A number where RackHD expects a string, and a wrong AMQP type.
            let wrongShape = await #expect(throws: BusError.self) {
                _ = try await bus.callRaw(
                    exchangeNamed: bus.name(of: .dhcp), routingKey: IpInRange.method, body: Array(#"{"value":5}"#.utf8), type: "IpAddress")
            }
            #expect(wrongShape?.status == 400)
            let wrongType = await #expect(throws: BusError.self) {
                _ = try await bus.callRaw(
                    exchangeNamed: bus.name(of: .dhcp), routingKey: IpInRange.method, body: Array(#"{"value":"10.44.0.11"}"#.utf8),
                    type: "MacAddress")
            }
            #expect(wrongType?.status == 400)
            let stillServing = try await bus.call(IpInRange(ip: "10.44.0.11"))
            #expect(stillServing)
        }
    }

    @Test("a plain pika client that sets the AMQP type as RackHD does gets all nine answers")
    func pikaClient() async throws {
        try await withDHCPService(configuration) { bus, service in
            try await service.leaseTable!.importBound([lease("02:00:00:00:04:01", "10.44.0.11"), lease("02:00:00:00:04:02", "10.44.0.12")])
            let script = TestBroker.repositoryRoot.appendingPathComponent("Tests/Interop/pika_dhcp_client.py").path
            let output = try await TestBroker.run("/usr/bin/env", ["python3", script, TestBroker.url, bus.configuration.exchangePrefix])
            let replies = try JSONDecoder().decode(JSONValue.self, from: Data(output.utf8))
            #expect(replies["lookupIpLease"]?["type"] == "MacAddress")
            #expect(replies["lookupIpLease"]?["body"] == ["value": "02:00:00:00:04:01"])
            #expect(replies["ipInRange"]?["body"] == ["value": true])
            #expect(replies["peekLeaseTable"]?["body"]?["value"]?["leases"]?["02:00:00:00:04:02"]?["ipAddress"] == "10.44.0.12")
            #expect(replies["pinMac"]?["body"]?["value"]?["ipAddress"] == "10.44.0.11")
            #expect(replies["unpinMac"]?["body"] == ["value": ["ip": "10.44.0.11"]])
            #expect(replies["pinIp"]?["body"] == ["value": ["mac": "02:00:00:00:04:09", "ip": "10.44.0.19"]])
            #expect(replies["unpinIp"]?["body"] == ["value": ["mac": "02:00:00:00:04:09"]])
            #expect(replies["removeLease"]?["body"]?["value"]?["mac"] == "02:00:00:00:04:01")
            #expect(replies["removeLeaseByIp"]?["body"]?["value"]?["mac"] == "02:00:00:00:04:02")
            #expect(replies["badMac"]?["type"] == "ErrorEvent")
            #expect(replies["badMac"]?["body"]?["status"] == 400)
            for name in [
                "lookupIpLease", "ipInRange", "peekLeaseTable", "removeLease", "removeLeaseByIp", "pinMac", "unpinMac", "pinIp", "unpinIp",
            ] {
                #expect(replies[name]?["content_type"] == "application/json", "\(name)")
            }
        }
    }
}
