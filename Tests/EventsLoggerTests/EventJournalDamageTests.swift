import BusTestSupport
import Foundation
import GRDB
import Testing

@testable import EventsLogger

/// A journal this version cannot read (a NULL or a wrongly typed value) answers with an error
/// that names the file, never a crash.
@Suite("A damaged event journal")
struct EventJournalDamageTests {
    @Test(
        "a NULL or wrongly typed column makes a query fail with an error naming the file",
        arguments: [
            "UPDATE event SET time = 'noon'",
            "UPDATE event SET body = x'00ff'",
            "UPDATE event SET nodeId = x'00ff'",
            sqlRebuildingWithoutConstraints("event") + " UPDATE event SET kind = NULL",
        ])
    func damagedColumn(sql: String) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-journal-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("events.sqlite").path
        let journal = try await EventJournal.open(path: path)
        try await journal.insert([
            JournalRecord(time: 1, exchange: "on.events", routingKey: "dhcp.bind.success.n1", kind: .dhcp, nodeId: "n1", body: "{}")
        ])
        let query = JournalQuery(nodeId: nil, kind: nil, includeLogs: true, since: nil, until: nil, limit: 10)
        #expect(try await journal.entries(matching: query).count == 1)

        let queue = try DatabaseQueue(path: path)
        try await queue.write { try $0.execute(sql: sql) }
        let error = await #expect(throws: (any Error).self) { _ = try await journal.entries(matching: query) }
        #expect("\(error.map { "\($0)" } ?? "")".contains(path), "the error names the file: \(String(describing: error))")
    }
}
