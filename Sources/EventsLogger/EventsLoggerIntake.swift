import BusCore
import Foundation

/// What the logger does with one message, decided without I/O: the line to print (if any) and
/// the journal record to store (if any).
enum EventsLoggerIntake {
    enum Source: Sendable {
        case events
        case logging
    }

    struct Outcome: Sendable, Equatable {
        var line: String?
        var record: JournalRecord?
    }

    /// Keys of RPC requests (`methods.queryEvents`, …) that share an exchange with events.
    static func isRequest(routingKey: String) -> Bool {
        routingKey.hasPrefix("methods.")
    }

    static func handle(
        source: Source, exchange: String, routingKey: String, body bytes: [UInt8], receivedAt: Int64,
        configuration: EventsLoggerConfiguration
    ) -> Outcome {
        guard !isRequest(routingKey: routingKey) else { return Outcome() }
        let parsed = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        // The journal keeps the body as sent; a body that is not JSON is kept as a JSON string.
        let bodyText = parsed != nil ? String(decoding: bytes, as: UTF8.self) : nil
        let body = parsed ?? .string(String(decoding: bytes, as: UTF8.self))
        let journalBody = bodyText ?? LogLineFormatter.compactJSON(body)
        switch source {
        case .events:
            let record = JournalRecord(
                time: EventClassification.ownTime(ofEventBody: parsed) ?? receivedAt, exchange: exchange, routingKey: routingKey,
                kind: EventClassification.kind(ofEventRoutingKey: routingKey),
                nodeId: EventClassification.nodeId(ofEventRoutingKey: routingKey, body: parsed), body: journalBody)
            return Outcome(line: nil, record: record)
        case .logging:
            let fields = LogRecordFields(body: body, routingKey: routingKey)
            var outcome = Outcome()
            if fields.severity >= configuration.minimumOutputLevel {
                switch configuration.lineFormat {
                case .readable: outcome.line = LogLineFormatter.readableLine(fields, receivedAt: receivedAt)
                case .jsonLines:
                    // The body as sent when it is JSON on one line already; re-encoded otherwise.
                    let isOneLine = !bytes.contains(UInt8(ascii: "\n")) && !bytes.contains(UInt8(ascii: "\r"))
                    outcome.line = bodyText.flatMap { isOneLine ? $0 : nil } ?? LogLineFormatter.jsonLine(body)
                }
            }
            if fields.severity >= configuration.minimumJournalLevel {
                outcome.record = JournalRecord(
                    time: fields.timestampMilliseconds ?? receivedAt, exchange: exchange, routingKey: routingKey, kind: .log,
                    nodeId: EventClassification.nodeId(ofLogRecord: parsed), body: journalBody)
            }
            return outcome
        }
    }
}
