import BusCore
import Foundation
import Testing

@testable import EventsLogger

@Suite("Kinds, node ids, levels and times, without I/O")
struct ClassificationTests {
    @Test(
        "The kind is the routing key's first word",
        arguments: [
            ("tftp.success.abc", EventKind.tftp), ("tftp.failure.abc", .tftp), ("dhcp.bind.success.0200aa", .dhcp),
            ("http.response.n1", .http), ("graph.started.g1", .graph), ("graph.progress.g1", .graph), ("task.finished.t1", .task),
            ("default.task.finished", .task), ("sku.assigned.n1", .sku), ("node.discovered.information.n1.n1", .node),
            ("log.anything", .log), ("notification.n1", .other), ("bench.event.3", .other), ("errors.unhandled", .other),
            ("tftpd.success.n1", .other), ("", .other),
        ])
    func kinds(routingKey: String, kind: EventKind) {
        #expect(EventClassification.kind(ofEventRoutingKey: routingKey) == kind)
    }

    @Test(
        "Node-scoped keys give their last word; graph and task events their body's nodeId",
        arguments: [
            ("tftp.success.node1", nil, "node1"), ("tftp.failure.node1", nil, "node1"), ("tftp.success.external", nil, nil),
            ("http.response.58ab", nil, "58ab"), ("http.response.external", nil, nil),
            ("dhcp.bind.success.0200aabbccdd", nil, "0200aabbccdd"),
            ("sku.assigned.node3", ["sku": "s1"], "node3"), ("graph.started.g1", ["graphId": "g1", "nodeId": "node4"], "node4"),
            ("graph.finished.g1", ["graphId": "g1", "status": "succeeded"], nil), ("graph.progress.g1", ["nodeId": "node5"], "node5"),
            ("task.finished.t1", ["taskId": "t1", "nodeId": "node6"], "node6"), ("task.finished.t1", [:], nil),
            ("node.added.information.node7.node7", nil, "node7"), ("tftp.success", nil, nil), ("dhcp.bind.failure.n1", nil, nil),
            ("graph.started.g1", ["nodeId": ""], nil),
        ] as [(String, JSONValue?, String?)])
    func eventNodeIds(routingKey: String, body: JSONValue?, nodeId: String?) {
        #expect(EventClassification.nodeId(ofEventRoutingKey: routingKey, body: body) == nodeId)
    }

    @Test("A log record's node is its subject, unless that is Server")
    func logNodeIds() {
        #expect(EventClassification.nodeId(ofLogRecord: ["subject": "node1", "message": "m"]) == "node1")
        #expect(EventClassification.nodeId(ofLogRecord: ["subject": "Server"]) == nil)
        #expect(EventClassification.nodeId(ofLogRecord: ["subject": ""]) == nil)
        #expect(EventClassification.nodeId(ofLogRecord: ["message": "no subject"]) == nil)
        #expect(EventClassification.nodeId(ofLogRecord: "not an object") == nil)
    }

    @Test("An external event's createdAt is its time; other events have none")
    func eventTimes() {
        #expect(EventClassification.ownTime(ofEventBody: ["createdAt": "2026-11-21T18:00:00.123Z"]) == 1_795_284_000_123)
        #expect(EventClassification.ownTime(ofEventBody: ["time": "12.345"]) == nil)
        #expect(EventClassification.ownTime(ofEventBody: nil) == nil)
    }

    @Test("Levels read as producers spell them and order by severity")
    func levels() {
        #expect(LogSeverity(name: "warning") == .warning)
        #expect(LogSeverity(name: "WARN") == .warning)
        #expect(LogSeverity(name: "critical") == .alert)
        #expect(LogSeverity(name: "crit") == .alert)
        #expect(LogSeverity(name: "err") == .error)
        #expect(LogSeverity(name: "bogus") == nil)
        let ascending: [LogSeverity] = [.silly, .debug, .info, .notice, .warning, .error, .alert, .emerg]
        #expect(zip(ascending, ascending.dropFirst()).allSatisfy { lower, higher in lower < higher })
        #expect(LogSeverity.allCases.sorted(by: >) == LogSeverity.allCases, "declared most severe first")
    }

    @Test("Timestamps format and parse ISO-8601 in UTC with milliseconds")
    func timestamps() {
        #expect(Timestamps.iso8601(milliseconds: 0) == "1970-01-01T00:00:00.000Z")
        #expect(Timestamps.iso8601(milliseconds: 1_795_284_000_123) == "2026-11-21T18:00:00.123Z")
        #expect(Timestamps.iso8601(milliseconds: -1) == "1969-12-31T23:59:59.999Z")
        #expect(Timestamps.iso8601(milliseconds: 951_782_400_000) == "2000-02-29T00:00:00.000Z")
        #expect(Timestamps.milliseconds(iso8601: "2026-11-21T18:00:00.123Z") == 1_795_284_000_123)
        #expect(Timestamps.milliseconds(iso8601: "2026-11-21T19:30:00.123+01:30") == 1_795_284_000_123)
        #expect(Timestamps.milliseconds(iso8601: "2026-11-21T13:00:00.1234-0500") == 1_795_284_000_123)
        #expect(Timestamps.milliseconds(iso8601: "2026-11-21 18:00:00") == 1_795_284_000_000)
        #expect(Timestamps.milliseconds(iso8601: "2026-11-21T18:00:00.5Z") == 1_795_284_000_500)
        for bad in ["", "yesterday", "2026-11-21", "2026-13-01T00:00:00Z", "2026-11-21T18:00:00.Z", "2026-11-21T18:00:00Zjunk"] {
            #expect(Timestamps.milliseconds(iso8601: bad) == nil, "\(bad)")
        }
        for milliseconds in [Int64(0), 1, 86_399_999, 1_700_000_000_000, 4_102_444_800_000, -86_400_001] {
            #expect(Timestamps.milliseconds(iso8601: Timestamps.iso8601(milliseconds: milliseconds)) == milliseconds)
        }
        // Milliseconds that are exact binary fractions, so that Foundation's rounding cannot differ.
        let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
        for milliseconds in [Int64(1_795_284_000_125), 1_234_567_890_500, 1_709_164_800_750] {
            let expected = Date(timeIntervalSince1970: Double(milliseconds) / 1000).formatted(style)
            #expect(Timestamps.iso8601(milliseconds: milliseconds) == expected, "agrees with Foundation")
        }
    }
}

@Suite("Queries are validated before they reach the journal")
struct QueryValidationTests {
    @Test("Defaults: 100 entries, logs included")
    func defaults() throws {
        let query = try QueryEvents().journalQuery()
        #expect(query == JournalQuery(nodeId: nil, kind: nil, includeLogs: true, since: nil, until: nil, limit: 100))
        #expect(try QueryEvents(limit: 50_000).journalQuery().limit == 10_000)
        #expect(try QueryEvents(nodeId: "n1", kind: .tftp, since: 5, until: 5, includeLogs: false).journalQuery().kind == .tftp)
    }

    @Test("A non-positive limit, an unknown kind or a reversed window is a 400")
    func badInput() {
        var unknownKind = QueryEvents()
        unknownKind.kind = "bogus"
        for request in [QueryEvents(limit: 0), QueryEvents(limit: -3), unknownKind, QueryEvents(since: 10, until: 9)] {
            #expect(throws: ErrorEvent.self) { try request.journalQuery() }
            do {
                _ = try request.journalQuery()
            } catch {
                #expect(error.status == 400)
                #expect(error.name == "BadRequestError")
            }
        }
    }

    @Test("An omitted field is absent on the wire, so RackHD-style callers may send {}")
    func wire() throws {
        #expect(String(decoding: try WireFormat.encode(QueryEvents()), as: UTF8.self) == "{}")
        let decoded = try WireFormat.decode(QueryEvents.self, from: Array(#"{"nodeId":"n1","limit":5}"#.utf8))
        #expect(decoded == QueryEvents(nodeId: "n1", limit: 5))
    }
}
