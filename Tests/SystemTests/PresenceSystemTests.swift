import BusCore
import BusTestSupport
import Foundation
import Testing

/// `rackbus up` announces each service it runs, and `rackbus services` lists them.
@Suite("Presence of a running system", .timeLimit(.minutes(2)))
struct PresenceSystemTests {
    @Test("rackbus services lists what rackbus up runs, and hears it go offline")
    func servicesVerb() async throws {
        let configuration = try TestBroker.configuration()
        let up = ServiceProcess(arguments: [
            "--url", TestBroker.url, "--prefix", configuration.exchangePrefix, "--log-level", "warning", "--services", "scheduler",
        ])
        try up.start()
        let cli = ["--url", TestBroker.url, "--prefix", configuration.exchangePrefix]
        do {
            var output = ""
            let deadline = ContinuousClock.now + .seconds(30)
            while !output.contains("\"service\":\"scheduler\""), ContinuousClock.now < deadline {
                output = try await TestBroker.run(ServiceProcess.executable.path, ["services", "--json", "--wait", "1"] + cli)
            }
            let lines = output.split(separator: "\n").map(String.init)
            #expect(lines.count == 1, "\(output)")
            let member = try JSONDecoder().decode([String: JSONValue].self, from: Data((lines.first ?? "").utf8))
            #expect(member["service"] == .string("scheduler"))
            #expect(member["status"] == .string("online"))
            #expect(member["pid"] == .number(Double(up.processIdentifier ?? -1)))

            // A watcher hears the goodbye when the process stops (SIGTERM).
            try await TestBroker.withBus(configuration) { bus in
                let goodbyes = try await bus.subscribe(to: .events, patterns: ["presence.offline.#"], as: PresenceAnnouncement.self)
                #expect(await up.stop(), "rackbus up ended on SIGTERM")
                let heard = try await collect(goodbyes, count: 1, timeout: .seconds(20))
                #expect(heard.first?.message.service == "scheduler")
                #expect(heard.first?.routingKey.hasPrefix("presence.offline.scheduler.") == true)
            }
        } catch {
            await up.stop()
            throw error
        }
    }
}
