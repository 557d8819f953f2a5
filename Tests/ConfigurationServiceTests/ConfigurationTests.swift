import BusCore
import BusTestSupport
import Foundation
import Synchronization
import Testing

@testable import ConfigurationService

@Suite("Configuration values (pure)")
struct ConfigurationValidationTests {
    static let cases: [(String, JSONValue, Bool)] = [
        ("logging.level", "debug", true),
        ("logging.level", "loud", false),
        ("logging.level", 3, false),
        ("scheduler.concurrency", 16, true),
        ("scheduler.concurrency", 0, false),
        ("scheduler.concurrency", 2.5, false),
        ("scheduler.concurrency", "16", false),
        ("dhcp.pool", "172.31.128.10-172.31.131.250", true),
        ("dhcp.pool", "172.31.131.250-172.31.128.10", false),
        ("dhcp.pool", "172.31.128.10", false),
        ("dhcp.pool", "172.31.128.300-172.31.128.301", false),
        ("custom.setting", ["any": "value"], true),
        ("Bad Key", 1, false),
        ("nodots", 1, false),
        ("a..b", 1, false),
    ]

    @Test(arguments: cases)
    func validation(key: String, value: JSONValue, valid: Bool) {
        var accepted = true
        do {
            try ConfigurationKeys.validate(key: key, value: value)
        } catch {
            accepted = false
            #expect(error.status == 400)
        }
        #expect(accepted == valid, "\(key) = \(value)")
    }
}

@Suite("The configuration exchange over the real broker", .timeLimit(.minutes(1)))
struct ConfigurationExchangeTests {
    func withConfiguration<Result: Sendable>(_ body: @Sendable (MessageBus) async throws -> Result) async throws -> Result {
        try await TestBroker.withBus { bus in
            let service = ConfigurationService(bus: bus, databasePath: ":memory:", logger: TestBroker.logger)
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                defer { group.cancelAll() }
                await service.waitUntilReady()
                return try await body(bus)
            }
        }
    }

    @Test("set stores, get returns, every change is broadcast with its version")
    func setGetAndBroadcast() async throws {
        try await withConfiguration { bus in
            let changes = try await bus.subscribe(to: .configuration, patterns: ["configuration.changed.#"], as: ConfigurationEntry.self)
            let first = try await bus.call(SetConfiguration(key: "scheduler.concurrency", value: 8))
            #expect(first.version == 1)
            let second = try await bus.call(SetConfiguration(key: "scheduler.concurrency", value: 12))
            #expect(second.version == 2)
            _ = try await bus.call(SetConfiguration(key: "logging.level", value: "debug"))
            let one = try await bus.call(GetConfiguration(key: "scheduler.concurrency"))
            #expect(one["scheduler.concurrency"]?.value == 12)
            let all = try await bus.call(GetConfiguration())
            #expect(Set(all.keys) == ["scheduler.concurrency", "logging.level"])
            let unknown = try await bus.call(GetConfiguration(key: "no.such"))
            #expect(unknown.isEmpty)
            let broadcast = try await collect(changes, count: 3)
            #expect(
                broadcast.map(\.routingKey) == [
                    "configuration.changed.scheduler.concurrency", "configuration.changed.scheduler.concurrency",
                    "configuration.changed.logging.level",
                ])
            #expect(broadcast.map(\.message.version) == [1, 2, 1])
        }
    }

    @Test("invalid values are refused with a 400 and nothing changes")
    func invalidValues() async throws {
        try await withConfiguration { bus in
            let error = await #expect(throws: BusError.self) {
                _ = try await bus.call(SetConfiguration(key: "scheduler.concurrency", value: -1))
            }
            #expect(error?.status == 400)
            #expect(error?.remote?.message.contains("whole number from 1 to 10000") == true)
            let level = await #expect(throws: BusError.self) {
                _ = try await bus.call(SetConfiguration(key: "logging.level", value: "loud"))
            }
            #expect(level?.status == 400)
            let stored = try await bus.call(GetConfiguration())
            #expect(stored.isEmpty)
        }
    }

    @Test("a setting whose owner is not running to check it (dhcp.pool without DHCPService) is refused with a 503 and not stored")
    func ownerAbsent() async throws {
        try await withConfiguration { bus in
            let changes = try await bus.subscribe(to: .configuration, patterns: ["configuration.changed.#"], as: ConfigurationEntry.self)
            let error = await #expect(throws: BusError.self) {
                _ = try await bus.call(SetConfiguration(key: ConfigurationKeys.dhcpPool, value: "172.31.128.10-172.31.128.50"))
            }
            #expect(error?.status == 503)
            #expect(error?.remote?.message.contains("dhcp") == true, "\(String(describing: error))")
            #expect(try await bus.call(GetConfiguration()).isEmpty)
            #expect(await drain(changes, for: .milliseconds(300)).isEmpty, "nothing was broadcast")
            // Settings nobody else owns are still stored at once.
            #expect(try await bus.call(SetConfiguration(key: "scheduler.concurrency", value: 8)).version == 1)
        }
    }

    @Test("the owner's refusal reaches the caller and nothing is stored; what it accepts is stored and broadcast")
    func ownerDecides() async throws {
        try await withConfiguration { bus in
            let asked = Locked<[JSONValue]>([])
            let owner = ConfigurationValidator(bus: bus, owner: "dhcp") { key, value in
                asked.withLock { $0.append(value) }
                if value == "10.0.0.10-10.0.0.20" { throw ErrorEvent.badRequest("\(key): not in this server's subnet") }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await owner.run() }
                defer { group.cancelAll() }
                let changes = try await bus.subscribe(
                    to: .configuration, patterns: ["configuration.changed.#"], as: ConfigurationEntry.self)
                // The validator's queue may still be binding: retry until it answers.
                let refused = try await retryingUntilRefused {
                    try await bus.call(SetConfiguration(key: ConfigurationKeys.dhcpPool, value: "10.0.0.10-10.0.0.20"))
                }
                #expect(refused.status == 400)
                #expect(refused.remote?.message == "dhcp.pool: not in this server's subnet")
                #expect(try await bus.call(GetConfiguration()).isEmpty)
                #expect(await drain(changes, for: .milliseconds(300)).isEmpty, "nothing was broadcast")

                // A drained subscription has ended; the accepted change is followed on a new one.
                let later = try await bus.subscribe(to: .configuration, patterns: ["configuration.changed.#"], as: ConfigurationEntry.self)
                let stored = try await bus.call(SetConfiguration(key: ConfigurationKeys.dhcpPool, value: "172.31.128.10-172.31.128.50"))
                #expect(stored.version == 1)
                #expect(try await collect(later, count: 1).map(\.message) == [stored])
                #expect(asked.withLock { $0 }.suffix(2) == ["10.0.0.10-10.0.0.20", "172.31.128.10-172.31.128.50"])
            }
        }
    }

    @Test("a watcher applies the current value at start and every change after")
    func watcherAppliesLive() async throws {
        try await withConfiguration { bus in
            _ = try await bus.call(SetConfiguration(key: "scheduler.concurrency", value: 4))
            let applied = Locked<[JSONValue]>([])
            let watcher = ConfigurationWatcher(bus: bus, key: "scheduler.concurrency", logger: TestBroker.logger) { value in
                applied.withLock { $0.append(value) }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await watcher.run() }
                defer { group.cancelAll() }
                try await waitFor { applied.withLock { $0 } == [4] }
                _ = try await bus.call(SetConfiguration(key: "scheduler.concurrency", value: 9))
                try await waitFor { applied.withLock { $0 } == [4, 9] }
            }
        }
    }
}

/// Polls `condition` until it holds, or fails after `timeout`.
func waitFor(timeout: Duration = .seconds(10), _ condition: @Sendable () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("condition not met within \(timeout)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// Calls `body` until it fails with an answer other than the 503 of an owner that is not there yet.
func retryingUntilRefused(within window: Duration = .seconds(20), _ body: () async throws -> some Sendable) async throws -> BusError {
    let deadline = ContinuousClock.now + window
    while true {
        do {
            _ = try await body()
            throw TestFailure("the call was accepted")
        } catch let error as BusError where error.status == 503 && ContinuousClock.now < deadline {
            continue
        } catch let error as BusError {
            return error
        }
    }
}
