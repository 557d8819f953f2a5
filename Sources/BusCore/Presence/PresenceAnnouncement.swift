import Foundation

/// What a running service says about itself on `presence.<state>.<service>.<instance>` (on the
/// events exchange): it came up, it is still there, or it is going away. A service that dies
/// without a word is noticed by its silence (see ``PresenceTable``).
public struct PresenceAnnouncement: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        /// First word after start (and after every reconnect).
        case online
        /// Periodic, and the answer to `presence.query`.
        case alive
        /// Graceful stop.
        case offline
    }

    public var service: String
    /// One running process: `<host>-<pid>`, one routing-key word.
    public var instance: String
    public var host: String
    public var pid: Int
    public var state: State
    /// When the process started, ISO 8601.
    public var startedAt: String
    /// Seconds between `alive` announcements; observers allow three before they call it lost.
    public var intervalSeconds: Double

    public init(
        service: String, instance: String, host: String, pid: Int, state: State, startedAt: String, intervalSeconds: Double
    ) {
        self.service = service
        self.instance = instance
        self.host = host
        self.pid = pid
        self.state = state
        self.startedAt = startedAt
        self.intervalSeconds = intervalSeconds
    }
}

/// Routing keys of presence on the events exchange.
public enum PresenceKeys {
    /// Every announcement: `presence.online|alive|offline.<service>.<instance>`.
    public static let all = "presence.*.*.*"
    /// "Who is there?": every announcer answers at once with `alive`.
    public static let query = "presence.query"

    public static func announcement(_ state: PresenceAnnouncement.State, service: String, instance: String) -> String {
        "presence.\(state.rawValue).\(word(service)).\(word(instance))"
    }

    /// A routing-key word: no dots or wildcards.
    public static func word(_ text: String) -> String {
        let cleaned = String(text.map { $0 == "." || $0 == "*" || $0 == "#" ? "-" : $0 })
        return cleaned.isEmpty ? "-" : cleaned
    }
}
