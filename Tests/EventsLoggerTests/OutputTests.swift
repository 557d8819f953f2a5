import BusCore
import Foundation
import Logging
import Testing

@testable import EventsLogger

/// A RackHD LogEvent body.
func logRecord(
    level: String = "warning", message: String = "Task failed", subject: String = "5818d3f6c1c0",
    timestamp: String = "2026-11-21T18:00:00.123Z", context: JSONValue = ["graphId": "g-1", "taskId": "t-9"]
) -> JSONValue {
    [
        "name": "on-taskgraph", "host": "rack1", "module": "TaskGraph.TaskScheduler", "level": .string(level), "message": .string(message),
        "context": context, "timestamp": .string(timestamp), "caller": "task-scheduler.js:420", "subject": .string(subject),
    ]
}

func bytes(_ value: JSONValue) -> [UInt8] {
    Array(LogLineFormatter.compactJSON(value).utf8)
}

/// A fresh directory under the system's temporary one, removed after `body`.
func withTemporaryDirectory<Result>(_ body: (URL) async throws -> Result) async throws -> Result {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-events-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try await body(directory)
}

func lines(ofFile path: String) -> [String] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
    return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
}

@Suite("Output lines")
struct LineFormattingTests {
    @Test("A readable line: time level [service/module] subject: message {context}")
    func readable() {
        let fields = LogRecordFields(body: logRecord(), routingKey: "warning")
        let expected =
            "2026-11-21T18:00:00.123Z warning [on-taskgraph/TaskGraph.TaskScheduler] 5818d3f6c1c0: Task failed "
            + #"{"graphId":"g-1","taskId":"t-9"}"#
        #expect(LogLineFormatter.readableLine(fields, receivedAt: 0) == expected)
    }

    @Test("Missing parts are left out; line breaks are escaped; the receive time stands in for a missing timestamp")
    func sparse() {
        let bare = LogRecordFields(body: ["message": "first\nsecond\r\nthird", "context": [:]], routingKey: "info")
        #expect(
            LogLineFormatter.readableLine(bare, receivedAt: 1_795_284_000_123) == #"2026-11-21T18:00:00.123Z info first\nsecond\nthird"#)
        let moduleOnly = LogRecordFields(
            body: ["module": "dhcp", "level": "critical", "message": "m", "subject": "Server"], routingKey: "x")
        #expect(LogLineFormatter.readableLine(moduleOnly, receivedAt: 0) == "1970-01-01T00:00:00.000Z critical [dhcp] Server: m")
        #expect(moduleOnly.severity == .alert)
        let notJSON = LogRecordFields(body: .string("plain text"), routingKey: "error")
        #expect(LogLineFormatter.readableLine(notJSON, receivedAt: 0) == "1970-01-01T00:00:00.000Z error plain text")
        #expect(LogRecordFields(body: ["level": "bogus"], routingKey: "debug").severity == .debug, "the routing key is the level too")
        #expect(LogRecordFields(body: ["level": "bogus"], routingKey: "bogus").severity == .info, "unknown levels count as info")
    }

    @Test("A JSON line is the record, compact, keys sorted")
    func jsonLine() throws {
        let line = LogLineFormatter.jsonLine(logRecord(message: "two\nlines"))
        #expect(!line.contains("\n"))
        #expect(line.hasPrefix(#"{"caller":"task-scheduler.js:420","context":{"graphId":"g-1","taskId":"t-9"},"host":"rack1""#))
        #expect(try JSONDecoder().decode(JSONValue.self, from: Data(line.utf8)) == logRecord(message: "two\nlines"))
    }

    @Test("The intake prints and journals by level, skips requests, and keeps bodies as sent")
    func intake() throws {
        var configuration = EventsLoggerConfiguration(minimumOutputLevel: .warning, minimumJournalLevel: .info)
        func handle(_ source: EventsLoggerIntake.Source, _ key: String, _ body: [UInt8]) -> EventsLoggerIntake.Outcome {
            EventsLoggerIntake.handle(
                source: source, exchange: "on.x", routingKey: key, body: body, receivedAt: 42, configuration: configuration)
        }
        let warning = handle(.logging, "warning", bytes(logRecord()))
        #expect(warning.line?.hasPrefix("2026-11-21T18:00:00.123Z warning [") == true)
        #expect(warning.record?.kind == .log)
        #expect(warning.record?.nodeId == "5818d3f6c1c0")
        #expect(warning.record?.time == 1_795_284_000_123)
        let info = handle(.logging, "info", bytes(logRecord(level: "info", subject: "Server")))
        #expect(info.line == nil)
        #expect(info.record?.nodeId == nil)
        #expect(handle(.logging, "debug", bytes(logRecord(level: "debug"))) == .init(line: nil, record: nil))

        let sent = Array(#"{ "file": "ipxe.efi",  "size": 1024 }"#.utf8)
        let event = try #require(handle(.events, "tftp.success.node1", sent).record)
        #expect(
            event
                == JournalRecord(
                    time: 42, exchange: "on.x", routingKey: "tftp.success.node1", kind: .tftp, nodeId: "node1",
                    body: String(decoding: sent, as: UTF8.self)))
        #expect(handle(.events, "methods.queryEvents", Array("{}".utf8)) == .init(line: nil, record: nil))
        #expect(handle(.events, "bench.event.1", Array("not json".utf8)).record?.body == #""not json""#)

        configuration.lineFormat = .jsonLines
        let oneLine = Array(#"{"level": "warning", "message": "as sent"}"#.utf8)
        #expect(handle(.logging, "warning", oneLine).line == #"{"level": "warning", "message": "as sent"}"#)
        let pretty = Array("{\n  \"message\": \"pretty\",\n  \"level\": \"error\"\n}".utf8)
        #expect(handle(.logging, "error", pretty).line == #"{"level":"error","message":"pretty"}"#)
    }
}

@Suite("Log files rotate by size")
struct RotationTests {
    /// A line of exactly 99 characters (100 bytes with its newline).
    func numberedLine(_ number: Int) -> String {
        let label = "line \(number) "
        return label + String(repeating: "x", count: 99 - label.count)
    }

    @Test("Ten 100-byte lines fill a 1 KiB file; older files shift up and the oldest goes")
    func rotation() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("logs/events.log").path
            let file = try RotatingLogFile(LogFileOptions(path: path, maximumBytes: 1024, keptFiles: 3))
            for batch in stride(from: 1, through: 35, by: 7) {
                try file.append(lines: (batch..<batch + 7).map(numberedLine))
            }
            #expect(lines(ofFile: path) == (31...35).map(numberedLine))
            #expect(lines(ofFile: path + ".1") == (21...30).map(numberedLine))
            #expect(lines(ofFile: path + ".2") == (11...20).map(numberedLine))
            #expect(!FileManager.default.fileExists(atPath: path + ".3"))
            for generation in 0..<3 {
                let size =
                    try FileManager.default.attributesOfItem(atPath: RotatingLogFile.path(of: path, generation: generation))[.size] as? Int
                #expect((size ?? .max) <= 1024)
            }

            // A reopened file continues where it was: five lines fit before the next rotation.
            let reopened = try RotatingLogFile(LogFileOptions(path: path, maximumBytes: 1024, keptFiles: 3))
            #expect(reopened.size == 500)
            try reopened.append(lines: (36...41).map(numberedLine))
            #expect(lines(ofFile: path) == [numberedLine(41)])
            #expect(lines(ofFile: path + ".1") == (31...40).map(numberedLine))
            #expect(lines(ofFile: path + ".2") == (21...30).map(numberedLine))
        }
    }

    @Test("Keeping one file starts it over; a line longer than the limit gets a file of its own")
    func edgeCases() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("single.log").path
            let file = try RotatingLogFile(LogFileOptions(path: path, maximumBytes: 1024, keptFiles: 1))
            try file.append(lines: (1...12).map(numberedLine))
            #expect(lines(ofFile: path) == (11...12).map(numberedLine))
            #expect(!FileManager.default.fileExists(atPath: path + ".1"))

            let long = String(repeating: "y", count: 3000)
            let other = directory.appendingPathComponent("long.log").path
            let longFile = try RotatingLogFile(LogFileOptions(path: other, maximumBytes: 1024, keptFiles: 3))
            try longFile.append(lines: ["short", long, "after"])
            #expect(lines(ofFile: other + ".2") == ["short"])
            #expect(lines(ofFile: other + ".1") == [long])
            #expect(lines(ofFile: other) == ["after"])
        }
    }

    @Test("The output thread writes what it is given, in order, and flushes on demand")
    func outputWriter() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("out.log").path
            let writer = try await OutputWriter.start(
                toStandardOutput: false, file: LogFileOptions(path: path, maximumBytes: 4096, keptFiles: 2), format: .readable,
                capacity: 100_000, logger: Logger(label: "test"))
            for number in 1...500 {
                writer.write(numberedLine(number))
            }
            await writer.flush()
            let written = lines(ofFile: path + ".1") + lines(ofFile: path)
            #expect(written == Array((1...500).map(numberedLine).suffix(written.count)))
            #expect(written.last == numberedLine(500))
            await writer.close()
            #expect(!writer.write("after close"))
        }
    }

    @Test("Opening a log file where none can be is an error at start")
    func unwritable() async throws {
        await #expect(throws: (any Error).self) {
            _ = try await OutputWriter.start(
                toStandardOutput: false, file: LogFileOptions(path: "/proc/rackbus-no-such-dir/events.log"), format: .readable,
                capacity: 10, logger: Logger(label: "test"))
        }
    }
}
