import BusCore
import BusTestSupport
import Foundation
import Testing

@testable import EventsLogger

/// Runs a bus and an EventsLogger for the duration of `body`.
func withEventsLogger<Result: Sendable>(
    _ configuration: EventsLoggerConfiguration, _ body: @Sendable (MessageBus, EventsLoggerService) async throws -> Result
) async throws -> Result {
    try await TestBroker.withBus { bus in
        let service = EventsLoggerService(bus: bus, configuration: configuration, logger: TestBroker.logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await service.run() }
            defer { group.cancelAll() }
            await service.waitUntilReady()
            return try await body(bus, service)
        }
    }
}

/// Waits until the journal holds `count` entries.
func waitForJournal(_ service: EventsLoggerService, count: Int, timeout: Duration = .seconds(15)) async throws {
    let deadline = ContinuousClock.now + timeout
    var seen = 0
    while ContinuousClock.now < deadline {
        seen = try await service.journalCount()
        if seen == count { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("the journal holds \(seen) entries, expected \(count)")
    throw BusError(code: .timeout, message: "journal never reached \(count) entries")
}

func publishLog(_ bus: MessageBus, _ record: JSONValue, level: String) async throws {
    try await bus.publish(record, to: .logging, routingKey: level, type: "LogEvent")
}

/// Silent on stdout, journal in memory, retention only on demand.
let quietConfiguration = EventsLoggerConfiguration(
    journalPath: ":memory:", writesToStandardOutput: false, retentionInterval: .seconds(3600))

@Suite("EventsLogger over the real broker", .timeLimit(.minutes(2)))
struct EventsLoggerServiceTests {
    @Test("queryEvents returns exactly one node's events and log records, oldest first")
    func nodeQueries() async throws {
        try await withEventsLogger(quietConfiguration) { bus, service in
            let events: [(String, JSONValue)] = [
                ("tftp.success.nodeA", ["file": "ipxe.efi", "remoteAddress": "10.1.1.5", "size": 1024]),
                ("dhcp.bind.success.nodeB", ["ip": "10.1.1.6"]),
                ("http.response.nodeA", ["method": "GET", "url": "/api/current/profiles", "statusCode": 200]),
                ("graph.started.g1", ["graphId": "g1", "graphName": "Discovery", "status": "running", "nodeId": "nodeA"]),
                ("sku.assigned.nodeB", ["sku": "sku-1"]),
                ("task.finished.t1", ["taskId": "t1", "state": "succeeded", "nodeId": "nodeB"]),
                ("tftp.success.external", ["file": "undionly.kpxe"]),
                ("graph.finished.g2", ["graphId": "g2", "status": "succeeded"]),
            ]
            for (key, body) in events {
                try await bus.publish(body, to: .events, routingKey: key)
            }
            // An hour old by its own timestamp: it sorts before the events received just now.
            let anHourAgo = Timestamps.iso8601(milliseconds: currentMilliseconds() - 3_600_000)
            try await publishLog(bus, logRecord(level: "info", message: "booting", subject: "nodeA", timestamp: anHourAgo), level: "info")
            try await publishLog(bus, logRecord(level: "debug", subject: "nodeA"), level: "debug")
            try await publishLog(bus, logRecord(level: "warning", subject: "Server"), level: "warning")
            try await waitForJournal(service, count: 10)

            let nodeA = try await bus.call(QueryEvents(nodeId: "nodeA"))
            #expect(nodeA.map(\.routingKey) == ["info", "tftp.success.nodeA", "http.response.nodeA", "graph.started.g1"])
            #expect(nodeA.map(\.kind) == [.log, .tftp, .http, .graph])
            #expect(nodeA.allSatisfy { $0.nodeId == "nodeA" })
            #expect(nodeA.first?.exchange == bus.name(of: .logging))
            #expect(nodeA.first?.body["message"] == "booting")
            #expect(nodeA[1].exchange == bus.name(of: .events))
            #expect(nodeA[1].body == ["file": "ipxe.efi", "remoteAddress": "10.1.1.5", "size": 1024])

            let nodeAEventsOnly = try await bus.call(QueryEvents(nodeId: "nodeA", includeLogs: false))
            #expect(nodeAEventsOnly.map(\.routingKey) == ["tftp.success.nodeA", "http.response.nodeA", "graph.started.g1"])
            let nodeB = try await bus.call(QueryEvents(nodeId: "nodeB"))
            #expect(nodeB.map(\.routingKey) == ["dhcp.bind.success.nodeB", "sku.assigned.nodeB", "task.finished.t1"])

            let everything = try await bus.call(QueryEvents(limit: 1000))
            #expect(everything.count == 10, "the debug record is below the journal level")
            #expect(everything.map(\.time) == everything.map(\.time).sorted())
            #expect(!everything.contains { $0.routingKey.hasPrefix("methods.") }, "queries are not journaled as events")
            #expect(everything.first { $0.routingKey == "tftp.success.external" }?.nodeId == nil)
            #expect(everything.first { $0.routingKey == "warning" }?.nodeId == nil)
        }
    }

    @Test("kind, since, until and limit narrow the answer")
    func filters() async throws {
        try await withEventsLogger(quietConfiguration) { bus, service in
            // Their own createdAt, a second apart, a minute ago: distinct times that sort before the http events.
            let aMinuteAgo = currentMilliseconds() - 60_000
            for number in 1...5 {
                let body: JSONValue = [
                    "file": .string("f\(number)"),
                    "createdAt": .string(Timestamps.iso8601(milliseconds: aMinuteAgo + Int64(number) * 1000)),
                ]
                try await bus.publish(body, to: .events, routingKey: "tftp.success.nodeC")
            }
            try await bus.publish(["statusCode": 200] as JSONValue, to: .events, routingKey: "http.response.nodeC")
            try await bus.publish(["statusCode": 404] as JSONValue, to: .events, routingKey: "http.response.nodeD")
            try await waitForJournal(service, count: 7)

            let tftp = try await bus.call(QueryEvents(kind: .tftp))
            #expect(tftp.map(\.time) == (1...5).map { aMinuteAgo + Int64($0) * 1000 })
            #expect(tftp.map { $0.body["file"] } == ["f1", "f2", "f3", "f4", "f5"])
            #expect(try await bus.call(QueryEvents(kind: .http)).map(\.nodeId) == ["nodeC", "nodeD"])
            #expect(try await bus.call(QueryEvents(kind: .log)).isEmpty)

            let recentTwo = try await bus.call(QueryEvents(nodeId: "nodeC", limit: 2))
            #expect(recentTwo.map(\.routingKey) == ["tftp.success.nodeC", "http.response.nodeC"])
            #expect(recentTwo.first?.body["file"] == "f5")

            let all = try await bus.call(QueryEvents())
            let since = tftp[2].time
            let until = all.last!.time
            let window = try await bus.call(QueryEvents(since: since, until: until))
            #expect(window == all.filter { $0.time >= since && $0.time < until })
            #expect(window.first?.body["file"] == "f3")
            #expect(try await bus.call(QueryEvents(since: all.last!.time + 1)).isEmpty)
        }
    }

    @Test("Bad queries are answered with a 400 ErrorEvent")
    func badQueries() async throws {
        try await withEventsLogger(quietConfiguration) { bus, _ in
            var unknownKind = QueryEvents()
            unknownKind.kind = "bogus"
            for request in [QueryEvents(limit: 0), unknownKind, QueryEvents(since: 2, until: 1)] {
                let error = await #expect(throws: BusError.self) { try await bus.call(request) }
                #expect(error?.code == .remote)
                #expect(error?.remote?.status == 400)
                #expect(error?.remote?.name == "BadRequestError")
            }
            let malformed = await #expect(throws: BusError.self) {
                try await bus.callRaw(
                    exchangeNamed: bus.name(of: .events), routingKey: QueryEvents.method, body: Array(#"{"limit":"ten"}"#.utf8))
            }
            #expect(malformed?.remote?.status == 400)
        }
    }

    @Test("Retention by count keeps the newest entries, on demand and periodically")
    func retentionByCount() async throws {
        var configuration = quietConfiguration
        configuration.maximumEntries = 3
        try await withEventsLogger(configuration) { bus, service in
            for number in 1...6 {
                try await bus.publish(
                    ["n": .number(Double(number))] as JSONValue, to: .events, routingKey: "node.updated.information.n\(number).n\(number)")
            }
            try await waitForJournal(service, count: 6)
            #expect(try await service.enforceRetention() == 3)
            let kept = try await bus.call(QueryEvents())
            #expect(kept.map(\.nodeId) == ["n4", "n5", "n6"])
            #expect(try await service.enforceRetention() == 0)
        }

        configuration.retentionInterval = .milliseconds(100)
        try await withEventsLogger(configuration) { bus, service in
            for number in 1...6 {
                try await bus.publish(["n": .number(Double(number))] as JSONValue, to: .events, routingKey: "sku.assigned.n\(number)")
            }
            let deadline = ContinuousClock.now + .seconds(15)
            var kept: [String?] = []
            while ContinuousClock.now < deadline {
                kept = try await service.query(QueryEvents()).map(\.nodeId)
                if kept == ["n4", "n5", "n6"] { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(kept == ["n4", "n5", "n6"])
        }
    }

    @Test("Retention by age drops entries older than the maximum age")
    func retentionByAge() async throws {
        var configuration = quietConfiguration
        configuration.maximumAge = .seconds(7 * 86_400)
        try await withEventsLogger(configuration) { bus, service in
            let eightDaysAgo = Timestamps.iso8601(milliseconds: currentMilliseconds() - 8 * 86_400_000)
            let sixDaysAgo = Timestamps.iso8601(milliseconds: currentMilliseconds() - 6 * 86_400_000)
            try await publishLog(bus, logRecord(level: "error", message: "stale", timestamp: eightDaysAgo), level: "error")
            try await publishLog(bus, logRecord(level: "error", message: "recent", timestamp: sixDaysAgo), level: "error")
            try await bus.publish(["file": "x"] as JSONValue, to: .events, routingKey: "tftp.success.nodeE")
            try await waitForJournal(service, count: 3)
            #expect(try await service.enforceRetention() == 1)
            let kept = try await bus.call(QueryEvents())
            #expect(kept.map { $0.body["message"] ?? $0.body["file"] } == ["recent", "x"])
        }
    }

    @Test("The log file holds the readable lines at or above the output level, and rotates")
    func logFile() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("events.log").path
            var configuration = quietConfiguration
            configuration.logFile = LogFileOptions(path: path, maximumBytes: 2048, keptFiles: 3)
            configuration.minimumOutputLevel = .info
            try await withEventsLogger(configuration) { bus, service in
                try await publishLog(bus, logRecord(), level: "warning")
                for number in 1...70 {
                    let record = logRecord(
                        level: "info", message: "record \(number)", subject: "node-\(number % 3)",
                        timestamp: "2026-11-21T18:00:\(10 + number % 50).000Z",
                        context: ["attempt": .number(Double(number))])
                    try await publishLog(bus, record, level: "info")
                }
                try await publishLog(bus, logRecord(level: "debug", message: "too chatty"), level: "debug")
                try await waitForJournal(service, count: 71)
                await service.flushOutput()

                let files = (0..<3).map { RotatingLogFile.path(of: path, generation: $0) }
                for file in files {
                    #expect(FileManager.default.fileExists(atPath: file), "\(file)")
                    let size = try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int
                    #expect((size ?? .max) <= 2048)
                }
                #expect(!FileManager.default.fileExists(atPath: path + ".3"), "only three files are kept")
                let current = lines(ofFile: path)
                #expect(
                    current.last
                        == #"2026-11-21T18:00:30.000Z info [on-taskgraph/TaskGraph.TaskScheduler] node-1: record 70 {"attempt":70}"#)
                let written = files.reversed().flatMap { lines(ofFile: $0) }
                #expect(written.count < 71, "the oldest lines went with the oldest file")
                #expect(written.allSatisfy { $0.hasPrefix("2026-11-21T18:00:") && $0.contains(" [on-taskgraph/TaskGraph.TaskScheduler] ") })
                #expect(zip(written.suffix(5), 66...70).allSatisfy { line, number in line.contains(": record \(number) {") })
                #expect(!written.contains { $0.contains("too chatty") }, "debug is below the output level")
            }
        }
    }

    @Test("With JSON lines, each line is the record's JSON")
    func jsonLines() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("events.jsonl").path
            var configuration = quietConfiguration
            configuration.logFile = LogFileOptions(path: path)
            configuration.lineFormat = .jsonLines
            try await withEventsLogger(configuration) { bus, service in
                let records = [logRecord(message: "one"), logRecord(level: "error", message: "two\nlines")]
                for record in records {
                    try await publishLog(bus, record, level: record["level"]!.stringValue!)
                }
                try await waitForJournal(service, count: 2)
                await service.flushOutput()
                let decoded = try lines(ofFile: path).map { try JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
                #expect(decoded == records)
            }
        }
    }

    @Test("A journal on disk survives a restart")
    func persistentJournal() async throws {
        try await withTemporaryDirectory { directory in
            var configuration = quietConfiguration
            configuration.journalPath = directory.appendingPathComponent("journal/events.sqlite").path
            try await withEventsLogger(configuration) { bus, service in
                try await bus.publish(["file": "ipxe.efi"] as JSONValue, to: .events, routingKey: "tftp.success.nodeF")
                try await waitForJournal(service, count: 1)
            }
            try await withEventsLogger(configuration) { bus, _ in
                let entries = try await bus.call(QueryEvents(nodeId: "nodeF"))
                #expect(entries.map(\.routingKey) == ["tftp.success.nodeF"])
                #expect(entries.first?.body == ["file": "ipxe.efi"])
            }
        }
    }

    @Test("The service ends when its bus shuts down")
    func endsWithTheBus() async throws {
        try await TestBroker.withBus { bus in
            let service = EventsLoggerService(bus: bus, configuration: quietConfiguration, logger: TestBroker.logger)
            try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await service.run()
                    return true
                }
                group.addTask {
                    try await Task.sleep(for: .seconds(10))
                    return false
                }
                await service.waitUntilReady()
                bus.shutdown()
                let endedFirst = try await group.next()
                group.cancelAll()
                #expect(endedFirst == true, "run() returned before the deadline")
            }
            await #expect(throws: ErrorEvent.self) { try await service.query(QueryEvents()) }
        }
    }
}
