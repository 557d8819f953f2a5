import BusCore
import Foundation

/// A log record as the logger reads it: RackHD's LogEvent fields (section 6 of the wire spec),
/// every one optional, because a body is whatever its producer sent.
struct LogRecordFields: Sendable, Equatable {
    var name: String?
    var module: String?
    var levelName: String?
    var message: String?
    var subject: String?
    var context: JSONValue?
    var timestampMilliseconds: Int64?
    /// The level from the body, else from the routing key (which on `on.logging` is the level).
    var severity: LogSeverity

    init(body: JSONValue?, routingKey: String) {
        name = body?["name"]?.stringValue
        module = body?["module"]?.stringValue
        levelName = body?["level"]?.stringValue ?? (routingKey.isEmpty ? nil : routingKey)
        subject = body?["subject"]?.stringValue
        context = body?["context"]
        switch body?["timestamp"] {
        case .string(let text): timestampMilliseconds = Timestamps.milliseconds(iso8601: text)
        case .number(let milliseconds): timestampMilliseconds = Int64(exactly: milliseconds.rounded())
        default: timestampMilliseconds = nil
        }
        switch body {
        case .object?: message = body?["message"]?.stringValue ?? body?["message"].map(LogLineFormatter.compactJSON)
        case .string(let text)?: message = text
        case let other?: message = LogLineFormatter.compactJSON(other)
        case nil: message = nil
        }
        // An unknown level is shown as sent and filtered as `info`, so it is seen by default.
        severity = levelName.flatMap(LogSeverity.init(name:)) ?? LogSeverity(name: routingKey) ?? .info
    }
}

/// Log records as output lines. Pure functions.
enum LogLineFormatter {
    /// `2026-11-21T18:00:00.123Z warning [service/module] subject: message {context}`: the time
    /// is the record's own (else `receivedAt`); the bracket, subject and context are left out
    /// when the record has none. Line breaks inside the message are escaped: one record, one line.
    static func readableLine(_ record: LogRecordFields, receivedAt: Int64) -> String {
        var line = Timestamps.iso8601(milliseconds: record.timestampMilliseconds ?? receivedAt)
        line += " "
        // The level as its producer spelled it (`critical` stays `critical`).
        line += record.levelName.flatMap { $0.isEmpty ? nil : $0 } ?? record.severity.rawValue
        let origin = [record.name, record.module].compactMap { $0?.isEmpty == false ? $0 : nil }.joined(separator: "/")
        if !origin.isEmpty {
            line += " [\(origin)]"
        }
        line += " "
        if let subject = record.subject, !subject.isEmpty {
            line += "\(subject): "
        }
        line += escapingLineBreaks(record.message ?? "")
        if let context = record.context, context != .object([:]), context != .null {
            line += " " + compactJSON(context)
        }
        return line
    }

    /// The record's JSON on one line, keys sorted so that equal records print equally.
    static func jsonLine(_ body: JSONValue) -> String {
        compactJSON(body)
    }

    /// The line that stands for lines the output had to drop.
    static func droppedLinesNotice(count: Int, at milliseconds: Int64, format: LogLineFormat) -> String {
        let message = "dropped \(count) log lines: the output could not keep up"
        switch format {
        case .readable:
            return "\(Timestamps.iso8601(milliseconds: milliseconds)) warning [events-logger] \(message)"
        case .jsonLines:
            return jsonLine([
                "name": "events-logger", "level": "warning", "message": .string(message), "subject": "Server",
                "timestamp": .string(Timestamps.iso8601(milliseconds: milliseconds)),
            ])
        }
    }

    static func compactJSON(_ value: JSONValue) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else { return "null" }
        return String(decoding: data, as: UTF8.self)
    }

    private static func escapingLineBreaks(_ text: String) -> String {
        guard text.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) else { return text }
        return text.replacingOccurrences(of: "\r\n", with: "\\n").replacingOccurrences(of: "\n", with: "\\n")
            .replacingOccurrences(of: "\r", with: "\\r")
    }
}
