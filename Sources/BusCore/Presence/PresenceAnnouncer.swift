import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Announces one service of this process: `online` once connected, `alive` every `interval` and
/// whenever someone asks (`presence.query`), `offline` when it stops. Put it after the
/// `MessageBus` in a `ServiceGroup`, so that the bus is still there to carry the goodbye.
public final class PresenceAnnouncer: Service, Sendable {
    public let service: String
    private let bus: MessageBus
    private let interval: Duration
    private let logger: Logger

    public init(bus: MessageBus, service: String, interval: Duration = .seconds(10), logger: Logger = Logger(label: "rackbus.presence")) {
        self.bus = bus
        self.service = service
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws(BusError) {
        // A service that starts before the broker waits for it, as the bus does.
        while (try? await bus.waitUntilConnected(timeout: .seconds(3600))) == nil {
            if Task.isCancelled || bus.isShutDown { return }
        }
        let queries = try await bus.subscribeRaw(toExchangeNamed: bus.name(of: .events), patterns: [PresenceKeys.query])
        await announce(.online)
        let interval = self.interval
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    for await _ in queries { await self.announce(.alive) }
                }
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: interval)
                        if !Task.isCancelled { await self.announce(.alive) }
                    }
                }
            }
        }
        queries.cancel()
        await announce(.offline)
    }

    private func announce(_ state: PresenceAnnouncement.State) async {
        let identity = ProcessIdentity.current
        let announcement = PresenceAnnouncement(
            service: service, instance: identity.instance, host: identity.host, pid: identity.pid, state: state,
            startedAt: identity.startedAt,
            intervalSeconds: interval.secondsValue)
        do {
            try await bus.publish(
                announcement, to: .events, routingKey: PresenceKeys.announcement(state, service: service, instance: identity.instance))
        } catch {
            logger.debug("could not announce presence", metadata: ["presence.state": "\(state.rawValue)", "error": "\(error)"])
        }
    }
}

/// This process, as presence names it.
struct ProcessIdentity: Sendable {
    var host: String
    var pid: Int
    var instance: String
    var startedAt: String

    static let current: ProcessIdentity = {
        let host = ProcessInfo.processInfo.hostName
        let pid = Int(ProcessInfo.processInfo.processIdentifier)
        return ProcessIdentity(
            host: host, pid: pid, instance: PresenceKeys.word("\(host)-\(pid)"), startedAt: Date().formatted(.iso8601))
    }()
}

extension MessageBus {
    /// Asks every running service to announce itself and returns who answered within `wait`
    /// (plus any goodbyes heard meanwhile), by service and instance.
    public func presence(
        wait: Duration = .seconds(2), file: String = #fileID, line: Int = #line
    ) async throws(BusError) -> [PresenceTable.Member] {
        let announcements = try await subscribe(
            to: .events, patterns: [PresenceKeys.all], as: PresenceAnnouncement.self, file: file, line: line)
        try await publish(PresenceQuery(), to: .events, routingKey: PresenceKeys.query, file: file, line: line)
        let table = SharedPresenceTable()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await delivery in announcements {
                    _ = table.apply(delivery.message)
                }
            }
            group.addTask { try? await Task.sleep(for: wait) }
            await group.next()
            group.cancelAll()
        }
        return table.all
    }

    /// Follows presence until cancelled: calls `body` for each service instance that comes
    /// online, says goodbye, or falls silent for three of its intervals (`lost`). It starts by
    /// asking everyone to announce themselves.
    public func watchPresence(
        file: String = #fileID, line: Int = #line, _ body: @escaping @Sendable (PresenceTable.Change) async -> Void
    ) async throws(BusError) {
        let announcements = try await subscribe(
            to: .events, patterns: [PresenceKeys.all], as: PresenceAnnouncement.self, file: file, line: line)
        try await publish(PresenceQuery(), to: .events, routingKey: PresenceKeys.query, file: file, line: line)
        let table = SharedPresenceTable()
        await withDiscardingTaskGroup { group in
            group.addTask {
                for await delivery in announcements {
                    if let change = table.apply(delivery.message) { await body(change) }
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(100))
                    for change in table.expire() { await body(change) }
                }
            }
        }
    }
}

/// A ``PresenceTable`` that an observer's tasks share.
private final class SharedPresenceTable: Sendable {
    private let table = Mutex(PresenceTable())

    func apply(_ announcement: PresenceAnnouncement) -> PresenceTable.Change? {
        table.withLock { $0.apply(announcement, at: .now) }
    }

    func expire() -> [PresenceTable.Change] {
        table.withLock { $0.expire(now: .now) }
    }

    var all: [PresenceTable.Member] { table.withLock { $0.all } }
}

/// The body of `presence.query`: nothing but the question.
struct PresenceQuery: Codable, Sendable {}
