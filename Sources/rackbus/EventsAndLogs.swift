import ArgumentParser
import BusCore
import EventsLogger
import Foundation
import Glibc

/// Colour only when a person is watching.
private let colourful = isatty(STDOUT_FILENO) == 1

private func paint(_ text: String, _ code: String) -> String {
    colourful ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text
}

private func emit(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

private func compactJSON<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: (try? encoder.encode(value)) ?? Data(), as: UTF8.self)
}

private func timeText(_ milliseconds: Int64) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
}

/// `rackbus events`: a node's (or everyone's) events from the EventsLogger's journal, then live.
struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show events from the journal: for a node, of a kind, since a time; --follow for live ones.")

    @OptionGroup var common: Graph.Common
    @Option(help: "Node id (e.g. the MAC without separators for DHCP, the graph's target)") var node: String?
    @Option(help: "Kind: tftp, dhcp, http, graph, task, sku, node, log, other") var kind: String?
    @Option(help: "Only events from the last N seconds") var since: Int?
    @Option(help: "At most this many from the journal") var limit = 100
    @Flag(help: "Keep printing new events as they arrive") var follow = false

    func run() async throws {
        let request = QueryEvents(
            nodeId: node, kind: kind.flatMap(EventKind.init(rawValue:)),
            since: since.map { Int64((Date().timeIntervalSince1970 - Double($0)) * 1000) },
            limit: limit, includeLogs: kind == "log")
        if let kind, EventKind(rawValue: kind) == nil {
            throw ValidationError("unknown kind '\(kind)': one of \(EventKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let (json, node, kind, follow) = (common.json, node, kind, follow)
        try await common.withBus { bus in
            let live = follow ? try await bus.subscribeRaw(toExchangeNamed: bus.name(of: .events), patterns: ["#"]) : nil
            for entry in try await bus.call(request) {
                emit(
                    json
                        ? compactJSON(entry)
                        : "\(paint(timeText(entry.time), "2"))  \(paint(entry.routingKey, "36"))  \(compactJSON(entry.body))")
            }
            guard let live else { return }
            for await delivery in live where !delivery.routingKey.hasPrefix("methods.") {
                let body = (try? JSONDecoder().decode(JSONValue.self, from: Data(delivery.message))) ?? .null
                let entryKind = EventClassification.kind(ofEventRoutingKey: delivery.routingKey)
                if let kind, entryKind.rawValue != kind { continue }
                if let node, EventClassification.nodeId(ofEventRoutingKey: delivery.routingKey, body: body) != node { continue }
                let now = Int64(Date().timeIntervalSince1970 * 1000)
                emit(
                    json
                        ? compactJSON(["time": JSONValue.number(Double(now)), "routingKey": .string(delivery.routingKey), "body": body])
                        : "\(paint(timeText(now), "2"))  \(paint(delivery.routingKey, "36"))  \(compactJSON(body))")
            }
        }
    }
}

/// `rackbus logs`: log records from every service (`on.logging`), from the journal, then live.
struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show services' log records at or above a level; --follow for live ones.")

    @OptionGroup var common: Graph.Common
    @Option(help: "Minimum level: emerg, alert, error, warning, notice, info, debug, silly") var level = "info"
    @Option(help: "Only records about this node (their subject)") var node: String?
    @Option(help: "At most this many from the journal") var limit = 100
    @Flag(help: "Keep printing new records as they arrive") var follow = false

    func validate() throws {
        guard LogLevel(rawValue: level) != nil else {
            throw ValidationError("unknown level '\(level)': one of \(LogLevel.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() async throws {
        let minimum = LogLevel(rawValue: level)!
        // Routing keys are levels, so the broker filters for us: bind only the wanted ones.
        let wanted = LogLevel.allCases.filter { $0.severity >= minimum.severity }.map(\.rawValue)
        let (json, node, limit, follow) = (common.json, node, limit, follow)
        try await common.withBus { bus in
            let live = follow ? try await bus.subscribe(to: .logging, patterns: wanted, as: LogEvent.self) : nil
            for entry in try await bus.call(QueryEvents(nodeId: node, kind: .log, limit: limit)) {
                guard let record = try? JSONDecoder().decode(LogEvent.self, from: JSONEncoder().encode(entry.body)),
                    record.level.severity >= minimum.severity
                else { continue }
                emit(json ? compactJSON(record) : Self.line(record))
            }
            guard let live else { return }
            for await delivery in live where node == nil || delivery.message.subject == node {
                emit(json ? compactJSON(delivery.message) : Self.line(delivery.message))
            }
        }
    }

    static func line(_ record: LogEvent) -> String {
        let colour: String
        switch record.level {
        case .emerg, .alert, .error: colour = "31"
        case .warning: colour = "33"
        case .notice: colour = "35"
        default: colour = "0"
        }
        let context = record.context.isEmpty ? "" : "  \(compactJSON(record.context))"
        return
            "\(paint(record.timestamp, "2")) \(paint(record.level.rawValue, colour)) [\(record.name)/\(record.module)] \(record.subject): \(record.message)\(context)"
    }
}
