import Foundation
import GRDB
import StoreSupport

/// Bound leases and pins in SQLite (GRDB), so they survive a restart. Offers are not stored:
/// they are reservations of seconds, and a REQUEST after a restart is checked against what is.
///
/// Every call runs on GRDB's own serial queue; callers suspend, they never block the
/// cooperative pool.
final class LeaseStore: Sendable {
    private let database: DatabaseQueue
    /// The file, for errors about its contents.
    private let path: String

    private init(database: DatabaseQueue, path: String) {
        self.database = database
        self.path = path
    }

    /// Opens (creating if needed) the store at `path`; `:memory:` gives a private in-memory store.
    static func open(path: String) async throws -> LeaseStore {
        LeaseStore(database: try await DatabaseQueue.open(path: path, migrator: migrator), path: path)
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: leases and pins") { db in
            try db.create(table: "lease") { table in
                table.primaryKey("mac", .text)
                table.column("ip", .text).notNull().unique()
                table.column("hostname", .text)
                table.column("boundAt", .double).notNull()
                table.column("expiresAt", .double).notNull()
                table.column("leaseSeconds", .integer).notNull()
            }
            try db.create(table: "pin") { table in
                table.primaryKey("mac", .text)
                table.column("ip", .text).notNull().unique()
            }
        }
        return migrator
    }

    /// Every stored lease and pin. Throws a ``DamagedDatabaseError`` naming the file for a NULL
    /// or wrongly typed column.
    func load() async throws -> (leases: [Lease], pins: [(MACAddress, IPv4Address)]) {
        let path = self.path
        return try await database.read { db in
            var leases: [Lease] = []
            for row in try Row.fetchAll(db, sql: "SELECT mac, ip, hostname, boundAt, expiresAt, leaseSeconds FROM lease") {
                // Text this version cannot parse as a MAC or an address is skipped, not fatal.
                guard let mac = MACAddress(try row.decode(String.self, "mac", in: path)),
                    let ip = IPv4Address(try row.decode(String.self, "ip", in: path))
                else { continue }
                leases.append(
                    Lease(
                        mac: mac, ip: ip, state: .bound, hostname: try row.decode(String?.self, "hostname", in: path),
                        boundAt: Date(timeIntervalSince1970: try row.decode(Double.self, "boundAt", in: path)),
                        expiresAt: Date(timeIntervalSince1970: try row.decode(Double.self, "expiresAt", in: path)),
                        leaseSeconds: UInt32(clamping: try row.decode(Int64.self, "leaseSeconds", in: path))))
            }
            var pins: [(MACAddress, IPv4Address)] = []
            for row in try Row.fetchAll(db, sql: "SELECT mac, ip FROM pin") {
                guard let mac = MACAddress(try row.decode(String.self, "mac", in: path)),
                    let ip = IPv4Address(try row.decode(String.self, "ip", in: path))
                else { continue }
                pins.append((mac, ip))
            }
            return (leases, pins)
        }
    }

    /// Stores a bound lease, displacing any stale row that still names its address.
    func saveBound(_ lease: Lease) async throws {
        try await saveBound([lease])
    }

    func saveBound(_ leases: [Lease]) async throws {
        try await database.write { db in
            for lease in leases {
                try db.execute(
                    sql: "DELETE FROM lease WHERE ip = ? AND mac != ?", arguments: [lease.ip.description, lease.mac.description])
                try db.execute(
                    sql: """
                        INSERT INTO lease (mac, ip, hostname, boundAt, expiresAt, leaseSeconds) VALUES (?, ?, ?, ?, ?, ?)
                        ON CONFLICT(mac) DO UPDATE SET ip = excluded.ip, hostname = excluded.hostname, boundAt = excluded.boundAt,
                            expiresAt = excluded.expiresAt, leaseSeconds = excluded.leaseSeconds
                        """,
                    arguments: [
                        lease.mac.description, lease.ip.description, lease.hostname,
                        (lease.boundAt ?? Date()).timeIntervalSince1970, lease.expiresAt.timeIntervalSince1970, Int64(lease.leaseSeconds),
                    ])
            }
        }
    }

    func deleteLeases(_ macs: [MACAddress]) async throws {
        guard !macs.isEmpty else { return }
        try await database.write { db in
            for mac in macs {
                try db.execute(sql: "DELETE FROM lease WHERE mac = ?", arguments: [mac.description])
            }
        }
    }

    func savePin(mac: MACAddress, ip: IPv4Address) async throws {
        try await database.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO pin (mac, ip) VALUES (?, ?)", arguments: [mac.description, ip.description])
        }
    }

    func deletePin(mac: MACAddress) async throws {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM pin WHERE mac = ?", arguments: [mac.description])
        }
    }
}
