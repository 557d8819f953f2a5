import BusCore
import Testing

@Suite("Presence table (pure)")
struct PresenceTableTests {
    let start = ContinuousClock.now

    func announcement(_ service: String, _ state: PresenceAnnouncement.State, interval: Double = 10) -> PresenceAnnouncement {
        PresenceAnnouncement(
            service: service, instance: "host-1", host: "host", pid: 1, state: state, startedAt: "2026-11-21T00:00:00Z",
            intervalSeconds: interval)
    }

    @Test func firstWordIsOnlineAndRepeatsChangeNothing() {
        var table = PresenceTable()
        #expect(table.apply(announcement("dhcp", .online), at: start)?.status == .online)
        #expect(table.apply(announcement("dhcp", .alive), at: start + .seconds(10)) == nil)
        #expect(table.all.map(\.status) == [.online])
        #expect(table.all.first?.lastHeard == start + .seconds(10))
    }

    @Test func goodbyeIsOffline() {
        var table = PresenceTable()
        _ = table.apply(announcement("dhcp", .online), at: start)
        #expect(table.apply(announcement("dhcp", .offline), at: start + .seconds(1))?.status == .offline)
        // An offline member is not lost later: it said goodbye.
        #expect(table.expire(now: start + .seconds(3600)).isEmpty)
    }

    @Test func silenceForThreeIntervalsIsLost() {
        var table = PresenceTable()
        _ = table.apply(announcement("dhcp", .alive, interval: 10), at: start)
        _ = table.apply(announcement("scheduler", .alive, interval: 1), at: start)
        #expect(table.expire(now: start + .seconds(3)).isEmpty, "exactly three intervals is still patience")
        #expect(table.expire(now: start + .milliseconds(3001)).map(\.member.service) == ["scheduler"])
        #expect(table.expire(now: start + .seconds(29)).isEmpty, "lost once, reported once")
        #expect(table.expire(now: start + .seconds(31)).map(\.member.service) == ["dhcp"])
        #expect(table.all.map(\.status) == [.lost, .lost])
    }

    @Test func aLostMemberThatSpeaksIsOnlineAgain() {
        var table = PresenceTable()
        _ = table.apply(announcement("dhcp", .online, interval: 1), at: start)
        _ = table.expire(now: start + .seconds(5))
        #expect(table.apply(announcement("dhcp", .alive, interval: 1), at: start + .seconds(6))?.status == .online)
    }

    @Test func instancesOfOneServiceAreSeparate() {
        var table = PresenceTable()
        var other = announcement("dhcp", .online)
        other.instance = "host-2"
        _ = table.apply(announcement("dhcp", .online), at: start)
        _ = table.apply(other, at: start)
        #expect(table.all.map(\.announcement.instance) == ["host-1", "host-2"])
    }

    @Test func routingKeyWordsHaveNoDotsOrWildcards() {
        #expect(PresenceKeys.word("rack.lab-7") == "rack-lab-7")
        #expect(PresenceKeys.word("a*b#c") == "a-b-c")
        #expect(PresenceKeys.word("") == "-")
        #expect(PresenceKeys.announcement(.alive, service: "dhcp", instance: "h.1-2") == "presence.alive.dhcp.h-1-2")
    }
}
