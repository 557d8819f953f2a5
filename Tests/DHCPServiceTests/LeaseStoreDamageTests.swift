import BusCore
import BusTestSupport
import Foundation
import GRDB
import Testing

@testable import DHCPService

/// A lease database that this version cannot read (a NULL or a wrongly typed value, written by
/// hand, another program or a bad disk) must stop the service with an error that names the
/// file, never crash it.
@Suite("A damaged lease database")
struct LeaseStoreDamageTests {
    let mac = MACAddress("02:77:00:00:00:01")!

    func configuration(_ path: String) -> DHCPConfiguration {
        DHCPConfiguration(
            pool: LeasePool(
                first: IPv4Address("10.77.0.10")!, last: IPv4Address("10.77.0.19")!, subnetMask: IPv4Address("255.255.255.0")!,
                serverAddress: IPv4Address("10.77.0.1")!),
            leaseSeconds: 600, databasePath: path)
    }

    /// A lease table on a fresh file (tables made by the real migrator) holding one bound lease.
    func databaseWithALease() async throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-leases-\(UUID().uuidString)")
        let path = directory.appendingPathComponent("dhcp.sqlite").path
        let table = try await LeaseTable.open(configuration: configuration(path), logger: TestBroker.logger)
        try await table.importBound([
            Lease(mac: mac, ip: IPv4Address("10.77.0.10")!, state: .bound, expiresAt: Date() + 600, leaseSeconds: 600)
        ])
        return path
    }

    @Test(
        "a NULL or wrongly typed column makes opening fail with an error naming the file",
        arguments: [
            sqlRebuildingWithoutConstraints("lease") + " UPDATE lease SET ip = NULL",
            "UPDATE lease SET leaseSeconds = 'forever'",
            "UPDATE lease SET expiresAt = x'00ff'",
            "UPDATE lease SET hostname = x'00ff'",
            "INSERT INTO pin (mac, ip) VALUES ('02:77:00:00:00:03', x'00ff')",
        ])
    func damagedColumn(sql: String) async throws {
        let path = try await databaseWithALease()
        defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
        try damage(path, sql)
        let error = await #expect(throws: (any Error).self) {
            _ = try await LeaseTable.open(configuration: configuration(path), logger: TestBroker.logger)
        }
        #expect("\(error.map { "\($0)" } ?? "")".contains(path), "the error names the file: \(String(describing: error))")
    }
}

/// When the store fails under a lease RPC, the caller gets a generic 500; what failed (SQL, the
/// file) goes to the log under the error id the caller sees.
@Suite("Lease store failures under the RPCs")
struct LeaseStoreFailureTests {
    @Test("a pin the store cannot save is undone, and its reply tells nothing of the store")
    func pinStoreFailureIsConcealed() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-pins-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("dhcp.sqlite").path
        let configuration = LeaseStoreDamageTests().configuration(path)
        let table = try await LeaseTable.open(configuration: configuration, logger: TestBroker.logger)
        try damage(path, "DROP TABLE pin")
        let mac = MACAddress("02:77:00:00:00:02")!
        let error = await #expect(throws: (any Error).self) { try await table.pin(mac: mac, to: IPv4Address("10.77.0.15")!) }
        let reply = ErrorEvent.from(try #require(error))
        #expect(reply.status == 500)
        for text in [reply.message, reply.stack, "\(reply.context)"] {
            #expect(!text.contains("pin (mac") && !text.contains("no such table") && !text.contains(path), "leaked: \(text)")
        }
        #expect(await table.snapshot().pinned.isEmpty, "the pin was undone")
    }
}

/// Runs raw SQL on a database file, as a hand edit or another program would.
func damage(_ path: String, _ sql: String) throws {
    let queue = try DatabaseQueue(path: path)
    try queue.write { try $0.execute(sql: sql) }
}
