import BusCore
import BusTestSupport
import Foundation
import Testing

/// `deploy/` runs one process per service: each systemd unit's command line, with the settings
/// of `deploy/rackbus.env`, starts its service, which serves its metrics port and announces itself.
@Suite("deploy/: the systemd units and their environment file", .serialized, .timeLimit(.minutes(3)))
struct DeployUnitsTests {
    struct Unit: Sendable {
        var service: String
        var arguments: [String]
        var metricsPort: Int
    }

    static var deployFolder: URL { TestBroker.repositoryRoot.appendingPathComponent("deploy") }

    /// Each unit's `ExecStart`, as arguments after `rackbus up`, with `${RACKBUS_METRICS_HOST}` filled in.
    static func units() throws -> [Unit] {
        let folder = deployFolder.appendingPathComponent("systemd")
        return try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".service") }.sorted().map { file in
            let text = try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)
            #expect(text.contains("EnvironmentFile=/etc/rackbus/rackbus.env"), "\(file)")
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("ExecStart=") }) else {
                throw TestFailure("\(file) has no ExecStart")
            }
            let words = line.dropFirst("ExecStart=".count).split(separator: " ").map {
                $0.replacingOccurrences(of: "${RACKBUS_METRICS_HOST}", with: "127.0.0.1")
            }
            guard words.first == "/usr/local/bin/rackbus", words.dropFirst().first == "up",
                let servicesIndex = words.firstIndex(of: "--services"), let metricsIndex = words.firstIndex(of: "--metrics-listen"),
                let port = words[metricsIndex + 1].split(separator: ":").last.flatMap({ Int($0) })
            else { throw TestFailure("\(file): unexpected ExecStart \(line)") }
            return Unit(service: words[servicesIndex + 1], arguments: Array(words.dropFirst(2)), metricsPort: port)
        }
    }

    /// `rackbus.env` with what a test machine must change: the broker, a prefix of its own,
    /// private files, loopback listeners, and no provisioning interface.
    static func environment(scratch: URL, prefix: String) throws -> [String: String] {
        let text = try String(contentsOf: deployFolder.appendingPathComponent("rackbus.env"), encoding: .utf8)
        var environment: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            environment[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        for (key, value) in environment where key.hasSuffix("_DATABASE") || key.hasSuffix("_ROOT") || key.hasSuffix("_LOG_FILE") {
            environment[key] = scratch.appendingPathComponent(URL(fileURLWithPath: value).lastPathComponent).path
        }
        environment["RACKBUS_AMQP_URL"] = TestBroker.url
        environment["RACKBUS_EXCHANGE_PREFIX"] = prefix
        environment["RACKBUS_DHCP_INTERFACE"] = ""
        environment["RACKBUS_TFTP_LISTEN"] = "127.0.0.1:0"
        environment["RACKBUS_HTTP_LISTEN"] = "127.0.0.1:0"
        environment["RACKBUS_HTTP_API_LISTEN"] = "127.0.0.1:0"
        return environment
    }

    @Test("Every unit starts its service with rackbus.env: metrics on the unit's port, presence online")
    func everyUnitRuns() async throws {
        let units = try Self.units()
        #expect(Set(units.map(\.service)) == ["configuration", "dhcp", "eventslogger", "http", "nodes", "scheduler", "taskgraph", "tftp"])
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-deploy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let prefix = TestBroker.uniquePrefix()
        let environment = try Self.environment(scratch: scratch, prefix: prefix)
        #expect(environment["RACKBUS_DHCP_BOOT_FILE"] == nil, "a fixed boot file would override the choice by client")
        let processes = units.map { unit in
            ServiceProcess(
                arguments: unit.arguments, logFile: scratch.appendingPathComponent("\(unit.service).log"), environment: environment)
        }
        // Held for the whole test: a broker-restart test must not run while the units connect.
        try await TestBroker.withBus(try TestBroker.configuration(prefix: prefix)) { _ in
            try await Self.startAndCheck(units: units, processes: processes, scratch: scratch, prefix: prefix)
        }
    }

    static func startAndCheck(units: [Unit], processes: [ServiceProcess], scratch: URL, prefix: String) async throws {
        for process in processes { try process.start() }
        do {
            for unit in units {
                try await eventually(timeout: .seconds(60), pollingEvery: .milliseconds(500)) {
                    (try? await HTTPProbe.get(port: unit.metricsPort, path: "/metrics"))?.status == 200
                }
            }
            var online = ""
            try await eventually(timeout: .seconds(30), pollingEvery: .milliseconds(200)) {
                online = try await TestBroker.run(
                    ServiceProcess.executable.path, ["services", "--json", "--wait", "1", "--url", TestBroker.url, "--prefix", prefix])
                return units.allSatisfy { online.contains("\"service\":\"\($0.service)\"") }
            }
        } catch {
            for process in processes { await process.stop() }
            for unit in units {
                let log = (try? String(contentsOf: scratch.appendingPathComponent("\(unit.service).log"), encoding: .utf8)) ?? ""
                Issue.record("\(unit.service): \(log.suffix(1500))")
            }
            throw error
        }
        for process in processes { await process.stop() }
    }
}
