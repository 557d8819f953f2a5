/// Who is running, as seen from announcements: pure, so every rule is tested without a broker.
///
/// A member is `online` from its first announcement, `offline` once it said goodbye, and `lost`
/// when three of its announcement intervals pass in silence (a crash, a cut network). A lost or
/// offline member that speaks again is online again.
public struct PresenceTable: Sendable {
    public enum Status: String, Sendable, Codable {
        case online, offline, lost
    }

    public struct Member: Sendable, Equatable {
        public var announcement: PresenceAnnouncement
        public var status: Status
        public var lastHeard: ContinuousClock.Instant
    }

    /// A member whose status changed.
    public struct Change: Sendable, Equatable {
        public var member: PresenceAnnouncement
        public var status: Status
    }

    /// How many intervals of silence make a member lost.
    public static let missedIntervals = 3.0

    private var members: [String: Member] = [:]

    public init() {}

    /// Everyone seen, by service and instance.
    public var all: [Member] {
        members.values.sorted { ($0.announcement.service, $0.announcement.instance) < ($1.announcement.service, $1.announcement.instance) }
    }

    /// Records an announcement; returns the change it makes, if any.
    public mutating func apply(_ announcement: PresenceAnnouncement, at now: ContinuousClock.Instant) -> Change? {
        let key = "\(announcement.service)/\(announcement.instance)"
        let status: Status = announcement.state == .offline ? .offline : .online
        let before = members[key]?.status
        members[key] = Member(announcement: announcement, status: status, lastHeard: now)
        return before == status ? nil : Change(member: announcement, status: status)
    }

    /// Marks as lost the online members that have been silent too long.
    public mutating func expire(now: ContinuousClock.Instant) -> [Change] {
        var changes: [Change] = []
        for (key, member) in members where member.status == .online {
            let patience = Duration.seconds(member.announcement.intervalSeconds * Self.missedIntervals)
            if now - member.lastHeard > patience {
                members[key]?.status = .lost
                changes.append(Change(member: member.announcement, status: .lost))
            }
        }
        return changes.sorted { ($0.member.service, $0.member.instance) < ($1.member.service, $1.member.instance) }
    }
}
