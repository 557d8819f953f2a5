import Foundation
import Testing

@testable import EventsLogger

@Suite("The event journal and redeliveries")
struct EventJournalDuplicateTests {
    @Test("a message delivered again (the same message id) is stored once; messages without an id are all kept")
    func redeliveryIsStoredOnce() async throws {
        let journal = try await EventJournal.open(path: ":memory:")
        func record(_ id: String?, node: String) -> JournalRecord {
            JournalRecord(
                time: 1, exchange: "on.events", routingKey: "dhcp.bind.success.\(node)", kind: .dhcp, nodeId: node, body: "{}",
                messageId: id)
        }
        try await journal.insert([record("m-1", node: "n1"), record("m-2", node: "n2")])
        // After a reconnect the broker hands both over again, in a later batch and in the same one.
        try await journal.insert([record("m-1", node: "n1"), record("m-3", node: "n3"), record("m-3", node: "n3")])
        try await journal.insert([record(nil, node: "n4"), record(nil, node: "n4")])
        let query = JournalQuery(nodeId: nil, kind: nil, includeLogs: true, since: nil, until: nil, limit: 100)
        let nodes = try await journal.entries(matching: query).compactMap(\.nodeId)
        #expect(nodes.sorted() == ["n1", "n2", "n3", "n4", "n4"])
    }
}
