import BusCore
import BusTestSupport
import Foundation
import GRDB
import Testing

@testable import ConfigurationService

/// A settings database this version cannot read (a NULL or a wrongly typed value) answers with
/// an error that names the file, never a crash.
@Suite("A damaged settings database")
struct ConfigurationStoreDamageTests {
    @Test(
        "a NULL or wrongly typed column makes a read fail with an error naming the file",
        arguments: [
            "UPDATE setting SET version = 'two'",
            "UPDATE setting SET updatedAt = x'00ff'",
            sqlRebuildingWithoutConstraints("setting") + " UPDATE setting SET key = NULL",
        ])
    func damagedColumn(sql: String) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-settings-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("configuration.sqlite").path
        let store = try await ConfigurationStore.open(path: path)
        _ = try await store.set(key: "scheduler.concurrency", value: 8)
        #expect(try await store.entries(key: nil).count == 1)

        let queue = try DatabaseQueue(path: path)
        try await queue.write { try $0.execute(sql: sql) }
        let error = await #expect(throws: (any Error).self) { _ = try await store.entries(key: nil) }
        #expect("\(error.map { "\($0)" } ?? "")".contains(path), "the error names the file: \(String(describing: error))")
    }
}
