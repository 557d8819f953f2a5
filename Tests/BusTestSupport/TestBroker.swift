import BusCore
import Foundation
import Glibc
import Logging
import Synchronization

/// The broker the integration tests use: the private one that `scripts/test` starts, found
/// through the environment that script exports (with the run command's defaults otherwise).
public enum TestBroker {
    public static var environment: [String: String] { ProcessInfo.processInfo.environment }

    public static var url: String {
        environment[BusConfiguration.urlEnvironmentKey] ?? BusConfiguration.defaultURL
    }

    public static var tlsURL: String {
        environment["RACKBUS_AMQPS_URL"] ?? "amqps://guest:guest@localhost:5671/"
    }

    public static var managementURL: String {
        environment["RACKBUS_MANAGEMENT_URL"] ?? "http://127.0.0.1:15672"
    }

    /// The repository root, for scripts the tests drive (`scripts/broker`, the pika clients).
    public static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// A configuration with a unique exchange prefix, so that concurrent tests never see each
    /// other's traffic, and short timeouts so that failures show quickly.
    public static func configuration(prefix: String? = nil, name: String = "rackbus-tests") throws -> BusConfiguration {
        var configuration = try BusConfiguration(url: url)
        configuration.exchangePrefix = prefix ?? uniquePrefix()
        configuration.connectionName = name
        configuration.defaultCallTimeout = .seconds(10)
        configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(1))
        return configuration
    }

    public static func uniquePrefix() -> String {
        "t\(UUID().uuidString.prefix(8).lowercased())"
    }

    public static let logger: Logger = {
        var logger = Logger(label: "rackbus.tests")
        logger.logLevel = environment["RACKBUS_TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        return logger
    }()

    /// Runs `body` with a connected bus. Tests that disturb the broker for everyone (a restart)
    /// use ``withExclusiveBroker(_:)``; every other test holds the shared side of the same lock.
    public static func withBus<Result: Sendable>(
        _ configuration: BusConfiguration? = nil, _ body: @Sendable (MessageBus) async throws -> Result
    ) async throws -> Result {
        let configuration = try configuration ?? self.configuration()
        return try await BrokerLock.shared.withShared {
            try await MessageBus.withBus(configuration: configuration, logger: logger) { bus in
                try await bus.waitUntilConnected(timeout: .seconds(30))
                return try await body(bus)
            }
        }
    }

    public static func withExclusiveBroker<Result: Sendable>(_ body: @Sendable () async throws -> Result) async throws -> Result {
        try await BrokerLock.shared.withExclusive(body)
    }

    /// Runs `scripts/broker <arguments>` with the test environment and returns its output.
    @discardableResult
    public static func brokerScript(_ arguments: String...) async throws -> String {
        try await run(repositoryRoot.appendingPathComponent("scripts/broker").path, arguments)
    }

    /// Runs a program to completion and returns its output; throws with the output when it fails.
    /// A cancelled run (a test's time limit) kills the program.
    @discardableResult
    public static func run(
        _ executable: String, _ arguments: [String], environment extra: [String: String] = [:], input: String? = nil
    ) async throws -> String {
        let environment = self.environment.merging(extra) { _, new in new }
        let outputURL = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-run-\(UUID().uuidString).out")
        let inputURL = outputURL.appendingPathExtension("in")
        defer {
            try? FileManager.default.removeItem(at: outputURL)
            try? FileManager.default.removeItem(at: inputURL)
        }
        if let input { try Data(input.utf8).write(to: inputURL) }
        let process = try ChildProcess(
            executable, arguments, environment: environment,
            input: input == nil ? nil : inputURL.path, output: outputURL.path, error: outputURL.path)
        let status = await process.waitForExit()
        let text = (try? String(contentsOf: outputURL, encoding: .utf8)) ?? ""
        try Task.checkCancellation()
        guard status == 0 else {
            throw TestFailure("\(executable) \(arguments.joined(separator: " ")) exited \(status): \(text)")
        }
        return text
    }

    /// GETs a management API path (`/api/exchanges/%2F/on.events`) as JSON.
    public static func management(_ path: String) async throws -> JSONValue {
        let output = try await run("/usr/bin/curl", ["-sf", "-u", "guest:guest", managementURL + path])
        return try JSONDecoder().decode(JSONValue.self, from: Data(output.utf8))
    }
}

public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A process-wide readers–writer lock over "the broker": ordinary tests share it, a test that
/// restarts the broker takes it alone, so no other test sees its connections drop.
/// A wait ends with `CancellationError` when its test is cancelled (a time limit), so a test
/// stuck while holding the lock fails the tests behind it instead of hanging the run.
public final class BrokerLock: Sendable {
    public static let shared = BrokerLock()

    private enum Side { case shared, exclusive }

    private struct Waiter {
        var id: UInt64
        var side: Side
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var readers = 0
        var writer = false
        var nextID: UInt64 = 0
        /// In arrival order; the first exclusive waiter goes next once the broker is free.
        var waiting: [Waiter] = []

        /// Who may go now, taken out of `waiting`. Readers never wait for a queued writer:
        /// tests nest `withBus`, and a nested shared acquisition must not deadlock behind a
        /// waiting restart.
        mutating func admit() -> [Waiter] {
            guard !writer else { return [] }
            if readers == 0, let index = waiting.firstIndex(where: { $0.side == .exclusive }) {
                writer = true
                return [waiting.remove(at: index)]
            }
            let admitted = waiting.filter { $0.side == .shared }
            waiting.removeAll { $0.side == .shared }
            readers += admitted.count
            return admitted
        }
    }

    private let state = Mutex(State())

    public init() {}

    public func withShared<Result: Sendable>(_ body: () async throws -> Result) async throws -> Result {
        try await acquire(.shared)
        defer { release(.shared) }
        return try await body()
    }

    public func withExclusive<Result: Sendable>(_ body: () async throws -> Result) async throws -> Result {
        try await acquire(.exclusive)
        defer { release(.exclusive) }
        return try await body()
    }

    private func acquire(_ side: Side) async throws {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome = state.withLock { state -> Result<Bool, CancellationError> in
                    // Checked under the lock: a cancellation either shows here or finds the waiter queued.
                    if Task.isCancelled { return .failure(CancellationError()) }
                    let free = side == .shared ? !state.writer : !state.writer && state.readers == 0
                    if free {
                        if side == .shared { state.readers += 1 } else { state.writer = true }
                        return .success(true)
                    }
                    state.waiting.append(Waiter(id: id, side: side, continuation: continuation))
                    return .success(false)
                }
                switch outcome {
                case .success(true): continuation.resume()
                case .success(false): break
                case .failure(let error): continuation.resume(throwing: error)
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> Waiter? in
                guard let index = state.waiting.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiting.remove(at: index)
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    private func release(_ side: Side) {
        let admitted = state.withLock { state -> [Waiter] in
            if side == .shared { state.readers -= 1 } else { state.writer = false }
            return state.admit()
        }
        for waiter in admitted { waiter.continuation.resume() }
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then closed again): a broker that is down.
public func deadLocalPort() throws -> Int {
    let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { Glibc.close(socket) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0 }
    }
    guard bound else { throw TestFailure("no free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Polls until `condition` holds (a change travels through the broker first), or fails after `timeout`.
public func eventually(
    timeout: Duration = .seconds(10), pollingEvery interval: Duration = .milliseconds(50), _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("condition not met within \(timeout)") }
        try await Task.sleep(for: interval)
    }
}

/// Repeats a call that times out until it is answered, for a service that is still starting
/// (in a process of its own, which can take long while the whole suite runs on two cores).
public func retryingUntilAnswered<T: Sendable>(within window: Duration, _ body: () async throws -> T) async throws -> T {
    let deadline = ContinuousClock.now + window
    while true {
        do {
            return try await body()
        } catch let error as BusError where error.code == .timeout && ContinuousClock.now < deadline {
            continue
        }
    }
}

/// Collects `count` deliveries, or fails after `timeout`.
public func collect<T: Sendable>(_ subscription: Subscription<T>, count: Int, timeout: Duration = .seconds(10)) async throws -> [Delivery<
    T
>] {
    try await withThrowingTaskGroup(of: [Delivery<T>]?.self) { group in
        group.addTask {
            var received: [Delivery<T>] = []
            for await delivery in subscription {
                received.append(delivery)
                if received.count == count { break }
            }
            return received
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        let first = try await group.next() ?? nil
        group.cancelAll()
        guard let first else { throw TestFailure("expected \(count) deliveries within \(timeout)") }
        return first
    }
}

/// Waits `duration` and returns whatever arrived meanwhile (to assert that nothing does).
public func drain<T: Sendable>(_ subscription: Subscription<T>, for duration: Duration) async -> [Delivery<T>] {
    await withTaskGroup(of: [Delivery<T>].self) { group in
        let collected = Mutex<[Delivery<T>]>([])
        group.addTask {
            for await delivery in subscription {
                collected.withLock { $0.append(delivery) }
            }
            return []
        }
        try? await Task.sleep(for: duration)
        group.cancelAll()
        return collected.withLock { $0 }
    }
}

extension Result where Failure == any Error {
    /// Captures an async call's outcome (for `async let` of calls that are expected to fail).
    public init(catching body: () async throws -> Success) async {
        do {
            self = .success(try await body())
        } catch {
            self = .failure(error)
        }
    }
}

extension Result {
    public var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

/// A thread-safe counter for handlers.
public final class Counter: Sendable {
    private let count = Mutex(0)
    public init() {}
    public func increment() { count.withLock { $0 += 1 } }
    public var value: Int { count.withLock { $0 } }
}

/// A value behind a lock, shareable with child tasks and closures.
public final class Locked<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>
    public init(_ value: Value) { storage = Mutex(value) }
    public func withLock<R: Sendable>(_ body: (inout sending Value) -> R) -> R { storage.withLock { body(&$0) } }
}
