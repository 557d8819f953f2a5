import BusCore
import BusTestSupport
import ConfigurationService
import DHCPService
import Foundation
import Testing

/// `rackbus up` in a process of its own, changed through the configuration exchange while it runs.
@Suite("Live configuration of a running rackbus up", .serialized, .timeLimit(.minutes(2)))
struct LiveConfigurationTests {
    @Test("dhcp.pool and logging.level take effect without a restart; invalid values are refused; metrics are served")
    func liveChanges() async throws {
        let configuration = try TestBroker.configuration()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-live-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = directory.appendingPathComponent("up.log")
        let metricsPort = try HTTPProbe.freePort()
        let up = ServiceProcess(
            arguments: [
                "--url", TestBroker.url, "--prefix", configuration.exchangePrefix, "--log-level", "info",
                "--configuration-database", directory.appendingPathComponent("config.sqlite").path,
                "--dhcp-database", directory.appendingPathComponent("dhcp.sqlite").path,
                "--taskgraph-database", directory.appendingPathComponent("tg.sqlite").path,
                "--nodes-database", directory.appendingPathComponent("nodes.sqlite").path,
                // Every service runs; the boot servers take free loopback ports, so no other test is in their way.
                "--tftp-root", directory.appendingPathComponent("tftp").path, "--tftp-listen", "127.0.0.1:0",
                "--http-listen", "127.0.0.1:0", "--http-api-listen", "127.0.0.1:0",
                "--metrics-listen", "127.0.0.1:\(metricsPort)",
            ], logFile: log)
        try up.start()
        do {
            try await TestBroker.withBus(configuration) { bus in
                // Up once the configuration owner answers.
                _ = try await retryingUntilAnswered(within: .seconds(60)) { try await bus.call(GetConfiguration(), timeout: .seconds(1)) }
                #expect(try await bus.call(IpInRange(ip: "172.31.128.20")) == true)

                _ = try await bus.call(SetConfiguration(key: ConfigurationKeys.dhcpPool, value: "172.31.130.1-172.31.130.50"))
                try await eventually { try await bus.call(IpInRange(ip: "172.31.128.20")) == false }
                #expect(try await bus.call(IpInRange(ip: "172.31.130.20")) == true)

                let refused = await #expect(throws: BusError.self) {
                    _ = try await bus.call(SetConfiguration(key: ConfigurationKeys.dhcpPool, value: "10.0.0.9-10.0.0.1"))
                }
                #expect(refused?.status == 400)

                // At info, the owner's "configuration changed" notices show; after logging.level=error they stop.
                _ = try await bus.call(SetConfiguration(key: "custom.before", value: 1))
                try await eventually { (try? String(contentsOf: log, encoding: .utf8))?.contains("config.setting=custom.before") == true }
                _ = try await bus.call(SetConfiguration(key: ConfigurationKeys.logLevel, value: "error"))
                try await Task.sleep(for: .milliseconds(500))
                _ = try await bus.call(SetConfiguration(key: "custom.after", value: 2))
                try await Task.sleep(for: .milliseconds(500))
                let text = try String(contentsOf: log, encoding: .utf8)
                #expect(!text.contains("config.setting=custom.after"), "a notice was logged after the level went to error")

                // Its metrics, as Prometheus scrapes them: connected, and the RPCs it served.
                let scrape = try await HTTPProbe.get(port: metricsPort, path: "/metrics")
                #expect(scrape.status == 200)
                #expect(scrape.body.contains("rackbus_bus_connected 1"))
                #expect(scrape.body.contains("rackbus_rpc_served_total"))
            }
        } catch {
            await up.stop()
            throw error
        }
        await up.stop()
    }

    @Test("dhcp.pool is checked by the running DHCPService: a pool outside its subnet is refused with a 400 and not stored")
    func ownerValidatesThePool() async throws {
        let configuration = try TestBroker.configuration()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-owner-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let up = ServiceProcess(
            arguments: [
                "--url", TestBroker.url, "--prefix", configuration.exchangePrefix, "--services", "configuration,dhcp",
                "--configuration-database", directory.appendingPathComponent("config.sqlite").path,
                "--dhcp-database", directory.appendingPathComponent("dhcp.sqlite").path,
            ], logFile: directory.appendingPathComponent("up.log"))
        try up.start()
        do {
            try await TestBroker.withBus(configuration) { bus in
                _ = try await retryingUntilAnswered(within: .seconds(60)) {
                    try await bus.call(IpInRange(ip: "172.31.128.20"), timeout: .seconds(1))
                }
                _ = try await retryingUntilAnswered(within: .seconds(60)) { try await bus.call(GetConfiguration(), timeout: .seconds(1)) }

                // Well formed, but outside the DHCP server's subnet (172.31.128.0/22).
                let refused = await #expect(throws: BusError.self) {
                    _ = try await bus.call(SetConfiguration(key: ConfigurationKeys.dhcpPool, value: "1.2.3.4-1.2.3.9"))
                }
                #expect(refused?.status == 400)
                #expect(refused?.remote?.message.contains("subnet") == true, "\(String(describing: refused))")
                #expect(try await bus.call(GetConfiguration(key: ConfigurationKeys.dhcpPool)).isEmpty, "the refused pool was stored")
                #expect(try await bus.call(IpInRange(ip: "1.2.3.5")) == false)
                #expect(try await bus.call(IpInRange(ip: "172.31.128.20")) == true)

                // A pool inside the subnet is stored and applied.
                let stored = try await bus.call(SetConfiguration(key: ConfigurationKeys.dhcpPool, value: "172.31.129.1-172.31.129.50"))
                #expect(stored.version == 1)
                #expect(
                    try await bus.call(GetConfiguration(key: ConfigurationKeys.dhcpPool))[ConfigurationKeys.dhcpPool]?.value
                        == "172.31.129.1-172.31.129.50")
                try await eventually { try await bus.call(IpInRange(ip: "172.31.128.20")) == false }
                #expect(try await bus.call(IpInRange(ip: "172.31.129.20")) == true)
            }
        } catch {
            await up.stop()
            throw error
        }
        await up.stop()
    }
}
