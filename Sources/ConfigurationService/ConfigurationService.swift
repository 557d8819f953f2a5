import BusCore
import Foundation
import GRDB
import Logging
import ServiceLifecycle
import StoreSupport
import Synchronization

/// The owner of RackBus's settings: a key/value store in SQLite that answers `methods.set` and
/// `methods.get` on `on.configuration` and broadcasts `configuration.changed.<key>` after each
/// change. Run exactly one (it is the only writer); every other service reads through the bus.
///
/// A change of a setting that a service owns (``ConfigurationKeys/owner(of:)``) is stored only
/// once that service accepted it (``ValidateConfiguration``); when the owner does not answer
/// within `ownerTimeout` (it is not running), the change is refused with a 503.
public final class ConfigurationService: Service, Sendable {
    private let bus: MessageBus
    private let databasePath: String
    private let ownerTimeout: Duration
    private let logger: Logger
    private let readiness = OneShotSignal()

    public init(
        bus: MessageBus, databasePath: String = ".rackbus/configuration.sqlite", ownerTimeout: Duration = .seconds(5),
        logger: Logger = Logger(label: "rackbus.configuration")
    ) {
        self.bus = bus
        self.databasePath = databasePath
        self.ownerTimeout = ownerTimeout
        self.logger = logger
    }

    public func run() async throws {
        let store = try await ConfigurationStore.open(path: databasePath)
        let bus = self.bus
        let logger = self.logger
        let ownerTimeout = self.ownerTimeout
        let setter = try await bus.server(for: SetConfiguration.self, concurrency: 1) { request, _ in
            try ConfigurationKeys.validate(key: request.value.key, value: request.value.value)
            if let owner = ConfigurationKeys.owner(of: request.value.key) {
                try await Self.askOwner(owner, about: request.value, on: bus, timeout: ownerTimeout)
            }
            let entry = try await store.set(key: request.value.key, value: request.value.value)
            logger.notice("configuration changed", metadata: ["config.setting": "\(entry.key)", "config.version": "\(entry.version)"])
            // Persistent and confirmed: a service that misses it reads the value with methods.get.
            try await bus.publishConfirmed(
                entry, to: .configuration, routingKey: ConfigurationEntry.changedKey(entry.key), persistent: true)
            return entry
        }
        let getter = try await bus.server(for: GetConfiguration.self) { request, _ in
            try await store.entries(key: request.value?.key)
        }
        readiness.signal()
        await withDiscardingTaskGroup { group in
            group.addTask { await setter.run() }
            group.addTask { await getter.run() }
            try? await gracefulShutdown()
            group.cancelAll()
        }
    }

    /// Returns once the RPCs are consuming (also when the waiting task is cancelled).
    public func waitUntilReady() async {
        await readiness.wait()
    }

    /// Returns when `owner` accepts the change; throws its refusal as it is, or a 503 when it
    /// does not answer: a value nobody could check is not stored.
    private static func askOwner(_ owner: String, about change: SetConfiguration.Change, on bus: MessageBus, timeout: Duration)
        async throws
    {
        do {
            _ = try await bus.call(ValidateConfiguration(key: change.key, value: change.value), timeout: timeout)
        } catch {
            if let refusal = error.remote { throw refusal }
            throw ErrorEvent(
                name: "ServiceUnavailableError",
                message:
                    "\(change.key) is checked by the \(owner) service before it is stored, and \(owner) did not answer (\(error.code)); "
                    + "start it and set \(change.key) again.",
                context: ["key": .string(change.key), "owner": .string(owner)], status: 503)
        }
    }
}

/// Answers ``ValidateConfiguration`` for the settings of one owner (``ConfigurationKeys/owner(of:)``):
/// `validate` returns when the service can apply the value and throws (a 400 ErrorEvent) when
/// it cannot. A `Service`, to run beside the service it speaks for.
public struct ConfigurationValidator: Service {
    private let bus: MessageBus
    private let owner: String
    private let validate: @Sendable (_ key: String, _ value: JSONValue) async throws -> Void

    public init(bus: MessageBus, owner: String, validate: @escaping @Sendable (_ key: String, _ value: JSONValue) async throws -> Void) {
        self.bus = bus
        self.owner = owner
        self.validate = validate
    }

    public func run() async throws {
        let validate = self.validate
        let server = try await bus.server(for: ValidateConfiguration.self, routingKey: ValidateConfiguration.routingKey(owner: owner)) {
            request, _ in
            try await validate(request.value.key, request.value.value)
            return true
        }
        await cancelWhenGracefulShutdown { await server.run() }
    }
}

/// Applies a setting live: reads its current value when it starts (a late subscriber learns the
/// last known state), then every `configuration.changed.<key>`. A `Service`, so that it runs
/// beside the service it configures.
public struct ConfigurationWatcher: Service {
    private let bus: MessageBus
    private let key: String
    private let logger: Logger
    private let apply: @Sendable (JSONValue) async -> Void

    public init(
        bus: MessageBus, key: String, logger: Logger = Logger(label: "rackbus.configuration"),
        apply: @escaping @Sendable (JSONValue) async -> Void
    ) {
        self.bus = bus
        self.key = key
        self.logger = logger
        self.apply = apply
    }

    public func run() async throws {
        let changes = try await bus.subscribe(
            to: .configuration, patterns: [ConfigurationEntry.changedKey(key)], as: ConfigurationEntry.self)
        // The owner may start later than we do; a missing answer just means "not set yet".
        if let current = try? await bus.call(GetConfiguration(key: key), timeout: .seconds(5))[key] {
            await apply(current.value)
        }
        await cancelWhenGracefulShutdown {
            for await change in changes {
                logger.info(
                    "applying configuration", metadata: ["config.setting": "\(key)", "config.version": "\(change.message.version)"])
                await apply(change.message.value)
            }
        }
    }
}

/// Settings in SQLite (GRDB): one row per key, with its version.
final class ConfigurationStore: Sendable {
    private let database: DatabaseQueue
    /// The file, for errors about its contents.
    private let path: String

    private init(database: DatabaseQueue, path: String) {
        self.database = database
        self.path = path
    }

    static func open(path: String) async throws -> ConfigurationStore {
        ConfigurationStore(database: try await DatabaseQueue.open(path: path, migrator: migrator), path: path)
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: settings") { db in
            try db.create(table: "setting") { table in
                table.primaryKey("key", .text)
                table.column("value", .blob).notNull()
                table.column("version", .integer).notNull()
                table.column("updatedAt", .integer).notNull()
            }
        }
        return migrator
    }

    func set(key: String, value: JSONValue) async throws -> ConfigurationEntry {
        let body = try JSONEncoder().encode(value)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        return try await database.write { db in
            let version = (try Int.fetchOne(db, sql: "SELECT version FROM setting WHERE key = ?", arguments: [key]) ?? 0) + 1
            try db.execute(
                sql: "INSERT OR REPLACE INTO setting (key, value, version, updatedAt) VALUES (?, ?, ?, ?)",
                arguments: [key, body, version, now])
            return ConfigurationEntry(key: key, value: value, version: version, updatedAt: now)
        }
    }

    /// The settings (one, or all), by key. Throws a ``DamagedDatabaseError`` naming the file for a
    /// NULL or wrongly typed column.
    func entries(key: String?) async throws -> [String: ConfigurationEntry] {
        let path = self.path
        return try await database.read { db in
            let rows =
                if let key {
                    try Row.fetchAll(db, sql: "SELECT key, value, version, updatedAt FROM setting WHERE key = ?", arguments: [key])
                } else {
                    try Row.fetchAll(db, sql: "SELECT key, value, version, updatedAt FROM setting")
                }
            var entries: [String: ConfigurationEntry] = [:]
            for row in rows {
                // A value that is not JSON is skipped; a NULL or a number in its place is damage.
                let body = try row.decode(Data.self, "value", in: path)
                guard let value = try? JSONDecoder().decode(JSONValue.self, from: body) else { continue }
                let key = try row.decode(String.self, "key", in: path)
                entries[key] = ConfigurationEntry(
                    key: key, value: value, version: try row.decode(Int.self, "version", in: path),
                    updatedAt: try row.decode(Int64.self, "updatedAt", in: path))
            }
            return entries
        }
    }
}
