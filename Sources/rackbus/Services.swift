import ArgumentParser
import BusCore
import Foundation

struct Services: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the running services (presence): who answers a presence query.",
        discussion: """
            Every service that `rackbus up` runs announces itself on the events exchange \
            (presence.online|alive|offline.<service>.<instance>) and answers presence.query. \
            With --watch, prints each service that comes online, goes offline, or falls silent \
            for three of its intervals (lost), until interrupted.
            """)

    @OptionGroup var bus: BusOptions

    @Option(help: "Seconds to wait for answers")
    var wait: Double = 2

    @Flag(help: "Keep watching and print changes as they happen")
    var watch = false

    @Flag(help: "One JSON object per line")
    var json = false

    func run() async throws {
        bus.bootstrapLogging()
        let configuration = try bus.busConfiguration(connectionName: "rackbus-cli")
        guard wait >= 0 else { throw ValidationError("--wait must not be negative") }
        let asJSON = json
        try await MessageBus.withBus(configuration: configuration) { messageBus in
            if watch {
                try await messageBus.watchPresence { change in
                    Self.emit(change.member, status: change.status, json: asJSON)
                }
                return
            }
            let members = try await messageBus.presence(wait: .milliseconds(Int(wait * 1000)))
            if !asJSON, members.isEmpty { print("no service answered within \(wait) s") }
            for member in members { Self.emit(member.announcement, status: member.status, json: asJSON) }
        }
    }

    private static func emit(_ announcement: PresenceAnnouncement, status: PresenceTable.Status, json: Bool) {
        let line: String
        if json {
            let object: JSONValue = .object([
                "service": .string(announcement.service), "instance": .string(announcement.instance), "host": .string(announcement.host),
                "pid": .number(Double(announcement.pid)), "status": .string(status.rawValue), "startedAt": .string(announcement.startedAt),
            ])
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            line = (try? String(decoding: encoder.encode(object), as: UTF8.self)) ?? ""
        } else {
            line =
                "\(status.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) \(announcement.service) \(announcement.instance) since \(announcement.startedAt)"
        }
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}
