import BusCore
import BusTestSupport
import Foundation
import Synchronization
import Testing

@Suite("Presence on the real broker", .timeLimit(.minutes(1)))
struct PresenceTests {
    @Test("running services answer a presence query; a stopped one says goodbye")
    func queryAndGoodbye() async throws {
        try await TestBroker.withBus { bus in
            let alpha = PresenceAnnouncer(bus: bus, service: "alpha", interval: .seconds(30), logger: TestBroker.logger)
            let beta = PresenceAnnouncer(bus: bus, service: "beta", interval: .seconds(30), logger: TestBroker.logger)
            let alphaRun = Task { try await alpha.run() }
            let betaRun = Task { try await beta.run() }
            defer { betaRun.cancel() }
            // Their intervals are long: the answers come from the query, not the timer.
            var members = try await bus.presence(wait: .milliseconds(500))
            let deadline = ContinuousClock.now + .seconds(10)
            while members.count < 2, ContinuousClock.now < deadline {
                members = try await bus.presence(wait: .milliseconds(500))
            }
            #expect(members.map(\.announcement.service) == ["alpha", "beta"])
            #expect(members.allSatisfy { $0.status == .online && $0.announcement.pid == Int(ProcessInfo.processInfo.processIdentifier) })

            let changes = Mutex<[String]>([])
            let watcher = Task {
                try await bus.watchPresence { change in
                    changes.withLock { $0.append("\(change.member.service) \(change.status.rawValue)") }
                }
            }
            defer { watcher.cancel() }
            try await waitFor { changes.withLock { $0.count } == 2 }
            alphaRun.cancel()
            _ = try? await alphaRun.value
            try await waitFor { changes.withLock { $0.contains("alpha offline") } }
            #expect(changes.withLock { $0 }.sorted() == ["alpha offline", "alpha online", "beta online"])
        }
    }

    @Test("a service that falls silent for three of its intervals is reported lost")
    func silenceIsLost() async throws {
        try await TestBroker.withBus { bus in
            let changes = Mutex<[String]>([])
            let watcher = Task {
                try await bus.watchPresence { change in
                    changes.withLock { $0.append("\(change.member.service) \(change.status.rawValue)") }
                }
            }
            defer { watcher.cancel() }
            try await Task.sleep(for: .milliseconds(300))
            // A service that announces itself once (interval 0.2 s) and then dies without a word.
            let started = ContinuousClock.now
            let crashed = PresenceAnnouncement(
                service: "crashy", instance: "h-1", host: "h", pid: 1, state: .online, startedAt: "2026-11-21T00:00:00Z",
                intervalSeconds: 0.2)
            try await bus.publish(crashed, to: .events, routingKey: PresenceKeys.announcement(.online, service: "crashy", instance: "h-1"))
            try await waitFor { changes.withLock { $0.contains("crashy lost") } }
            #expect(changes.withLock { $0 } == ["crashy online", "crashy lost"])
            #expect(ContinuousClock.now - started >= .milliseconds(600))
        }
    }

    private func waitFor(_ condition: @Sendable () -> Bool, timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else { throw TestFailure("condition not met within \(timeout)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
