import BusCore
import BusTestSupport
import Foundation
import GRDB
import NodeProtocol
import Testing

@testable import NodeRegistry

/// A node database this version cannot read (a NULL or a wrongly typed value) answers with an
/// error that names the file, never a crash.
@Suite("A damaged node database")
struct NodeStoreDamageTests {
    @Test(
        "a NULL or wrongly typed column makes a read fail with an error naming the file",
        arguments: [
            "UPDATE node SET createdAt = 'yesterday'",
            "UPDATE node SET name = x'00ff'",
            sqlRebuildingWithoutConstraints("identifier") + " UPDATE identifier SET mac = NULL",
            "UPDATE catalog SET createdAt = 'noon'",
            "INSERT INTO sku (name, rules, updatedAt) VALUES ('s1', 5, 0)",
        ])
    func damagedColumn(sql: String) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-nodes-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("nodes.sqlite").path
        let store = try await NodeStore.open(path: path)
        let node = try await store.register(macs: ["02:00:00:00:00:01"], name: nil, type: nil, now: 1).node
        #expect(node.id == "020000000001")
        #expect(try await store.addCatalog(nodeId: node.id, Catalog(source: "dmi", data: ["vendor": "acme"], createdAt: 2)))

        let queue = try DatabaseQueue(path: path)
        try await queue.write { try $0.execute(sql: sql) }
        let error = await #expect(throws: (any Error).self) {
            _ = try await store.nodes()
            _ = try await store.skus()
        }
        #expect("\(error.map { "\($0)" } ?? "")".contains(path), "the error names the file: \(String(describing: error))")
    }
}
