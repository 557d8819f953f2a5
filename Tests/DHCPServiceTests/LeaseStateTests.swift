import BusCore
import Foundation
import Testing

@testable import DHCPService

@Suite("Lease rules (pure)")
struct LeaseStateTests {
    let pool = LeasePool(
        first: IPv4Address("10.9.0.10")!, last: IPv4Address("10.9.0.12")!, subnetMask: IPv4Address("255.255.255.0")!,
        serverAddress: IPv4Address("10.9.0.1")!)
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let a = MACAddress("02:00:00:00:00:0a")!
    let b = MACAddress("02:00:00:00:00:0b")!
    let c = MACAddress("02:00:00:00:00:0c")!
    let d = MACAddress("02:00:00:00:00:0d")!

    func ip(_ text: String) -> IPv4Address { IPv4Address(text)! }

    func makeState() -> LeaseState {
        LeaseState(pool: pool, leaseSeconds: 600, offerHold: 30, declineHold: 300)
    }

    @Test func offersThenBindsDistinctAddresses() {
        var state = makeState()
        let offerA = state.offer(to: a, requested: nil, hostname: "node-a", at: now)
        let offerB = state.offer(to: b, requested: nil, hostname: nil, at: now)
        #expect(offerA?.ip == ip("10.9.0.10"))
        #expect(offerB?.ip == ip("10.9.0.11"))
        #expect(offerA?.state == .offered)
        guard case .bound(let lease, let isNew) = state.bind(ip("10.9.0.10"), to: a, hostname: nil, at: now) else {
            Issue.record("expected a binding")
            return
        }
        #expect(isNew)
        #expect(lease.hostname == "node-a", "the hostname from the DISCOVER is kept")
        #expect(lease.expiresAt == now + 600)
        #expect(state.boundLease(on: ip("10.9.0.10"), at: now)?.mac == a)
        // Renewing is not a new binding.
        guard case .bound(_, let renewedIsNew) = state.bind(ip("10.9.0.10"), to: a, hostname: nil, at: now + 300) else {
            Issue.record("expected a renewal")
            return
        }
        #expect(!renewedIsNew)
    }

    @Test func anAddressIsNeverHeldTwice() {
        var state = makeState()
        _ = state.offer(to: a, requested: nil, hostname: nil, at: now)
        guard case .bound = state.bind(ip("10.9.0.10"), to: a, hostname: nil, at: now) else {
            Issue.record("a gets its offer")
            return
        }
        // b asks for a's address: refused while a holds it.
        guard case .refused = state.bind(ip("10.9.0.10"), to: b, hostname: nil, at: now) else {
            Issue.record("b must not get a's address")
            return
        }
        #expect(state.offer(to: b, requested: ip("10.9.0.10"), hostname: nil, at: now)?.ip != ip("10.9.0.10"))
    }

    @Test func aFullPoolOffersNothing() {
        var state = makeState()
        for mac in [a, b, c] {
            let offer = state.offer(to: mac, requested: nil, hostname: nil, at: now)
            _ = state.bind(offer!.ip, to: mac, hostname: nil, at: now)
        }
        #expect(state.offer(to: d, requested: nil, hostname: nil, at: now) == nil)
        // Once a lease expires, its address is reused.
        #expect(state.offer(to: d, requested: nil, hostname: nil, at: now + 601) != nil)
    }

    @Test func expiredOffersFreeTheirAddress() {
        var state = LeaseState(
            pool: LeasePool(first: pool.first, last: pool.first, subnetMask: pool.subnetMask, serverAddress: pool.serverAddress),
            leaseSeconds: 600)
        #expect(state.offer(to: a, requested: nil, hostname: nil, at: now) != nil)
        #expect(state.offer(to: b, requested: nil, hostname: nil, at: now + 10) == nil, "a's offer still holds the only address")
        #expect(state.offer(to: b, requested: nil, hostname: nil, at: now + 31)?.ip == pool.first)
    }

    @Test func pinnedMACAlwaysGetsItsAddressAndNobodyElseDoes() throws {
        var state = makeState()
        try state.pin(mac: c, to: ip("10.9.0.10"), at: now)
        #expect(state.offer(to: a, requested: ip("10.9.0.10"), hostname: nil, at: now)?.ip == ip("10.9.0.11"))
        #expect(state.offer(to: c, requested: ip("10.9.0.12"), hostname: nil, at: now)?.ip == ip("10.9.0.10"))
        guard case .refused = state.bind(ip("10.9.0.12"), to: c, hostname: nil, at: now) else {
            Issue.record("a pinned MAC must be refused any other address")
            return
        }
        guard case .bound = state.bind(ip("10.9.0.10"), to: c, hostname: nil, at: now) else {
            Issue.record("the pinned MAC gets its address")
            return
        }
    }

    @Test func pinsAreRefusedOutsideThePoolOrInConflict() throws {
        var state = makeState()
        do {
            try state.pin(mac: a, to: ip("10.9.0.99"), at: now)
            Issue.record("outside the pool")
        } catch {
            #expect(error.status == 400)
        }
        try state.pin(mac: a, to: ip("10.9.0.10"), at: now)
        do {
            try state.pin(mac: b, to: ip("10.9.0.10"), at: now)
            Issue.record("pinned elsewhere")
        } catch {
            #expect(error.status == 409)
        }
        do {
            try state.pin(mac: a, to: ip("10.9.0.11"), at: now)
            Issue.record("the MAC is pinned elsewhere")
        } catch {
            #expect(error.status == 409)
        }
        _ = state.offer(to: b, requested: ip("10.9.0.11"), hostname: nil, at: now)
        _ = state.bind(ip("10.9.0.11"), to: b, hostname: nil, at: now)
        do {
            try state.pin(mac: c, to: ip("10.9.0.11"), at: now)
            Issue.record("leased to another MAC")
        } catch {
            #expect(error.status == 409)
        }
        #expect(state.unpin(mac: a) == ip("10.9.0.10"))
        #expect(state.unpin(ip: ip("10.9.0.10")) == nil)
    }

    @Test func pinMacNeedsALease() throws {
        var state = makeState()
        do {
            _ = try state.pin(mac: a, at: now)
            Issue.record("no lease to pin")
        } catch {
            #expect(error.status == 404)
        }
        _ = state.offer(to: a, requested: nil, hostname: nil, at: now)
        _ = state.bind(ip("10.9.0.10"), to: a, hostname: nil, at: now)
        #expect(try state.pin(mac: a, at: now).ip == ip("10.9.0.10"))
        #expect(state.snapshot(at: now).pinned == [a.description: "10.9.0.10"])
    }

    @Test func removeReleaseAndDecline() {
        var state = makeState()
        _ = state.offer(to: a, requested: nil, hostname: nil, at: now)
        _ = state.bind(ip("10.9.0.10"), to: a, hostname: nil, at: now)
        #expect(state.removeLease(on: ip("10.9.0.10"))?.mac == a)
        #expect(state.removeLease(for: a) == nil)
        // After removal the address can go to someone else.
        #expect(state.offer(to: b, requested: ip("10.9.0.10"), hostname: nil, at: now)?.ip == ip("10.9.0.10"))
        _ = state.bind(ip("10.9.0.10"), to: b, hostname: nil, at: now)
        #expect(state.release(ip("10.9.0.10"), from: b)?.mac == b)
        // A declined address rests.
        _ = state.offer(to: c, requested: ip("10.9.0.10"), hostname: nil, at: now)
        state.decline(ip("10.9.0.10"), from: c, at: now)
        #expect(!state.isAvailable(ip("10.9.0.10"), for: d, at: now + 10))
        #expect(state.isAvailable(ip("10.9.0.10"), for: d, at: now + 301))
    }

    /// RFC 2131 4.3.3: a DECLINE counts only from the client the address was offered or leased
    /// to. Anyone else's would let any MAC take pool addresses out of service for the rest time.
    @Test func declineOnlyFromTheClientThatHoldsTheAddress() {
        var state = makeState()
        _ = state.offer(to: a, requested: nil, hostname: nil, at: now)
        _ = state.bind(ip("10.9.0.10"), to: a, hostname: nil, at: now)
        _ = state.offer(to: b, requested: nil, hostname: nil, at: now)
        #expect(state.lease(for: b)?.ip == ip("10.9.0.11"))

        // A stranger declines a bound address, an offered one and a free one: nothing changes.
        state.decline(ip("10.9.0.10"), from: c, at: now)
        state.decline(ip("10.9.0.11"), from: c, at: now)
        state.decline(ip("10.9.0.12"), from: c, at: now)
        #expect(state.declined.isEmpty)
        #expect(state.boundLease(on: ip("10.9.0.10"), at: now)?.mac == a)
        #expect(state.lease(for: b)?.ip == ip("10.9.0.11"))
        #expect(state.isAvailable(ip("10.9.0.12"), for: d, at: now + 1))
        // A client declining an address other than its own changes nothing either.
        state.decline(ip("10.9.0.12"), from: a, at: now)
        #expect(state.isAvailable(ip("10.9.0.12"), for: d, at: now + 1))
        #expect(state.boundLease(on: ip("10.9.0.10"), at: now)?.mac == a)

        // The holder's own DECLINE, of an offer and of a lease, rests the address and drops the lease.
        state.decline(ip("10.9.0.11"), from: b, at: now)
        state.decline(ip("10.9.0.10"), from: a, at: now)
        #expect(state.lease(for: a) == nil)
        #expect(state.lease(for: b) == nil)
        #expect(!state.isAvailable(ip("10.9.0.10"), for: d, at: now + 10))
        #expect(!state.isAvailable(ip("10.9.0.11"), for: d, at: now + 10))
        #expect(state.isAvailable(ip("10.9.0.11"), for: d, at: now + 301))
    }

    @Test func snapshotHasRackHDsShape() throws {
        var state = makeState()
        _ = state.offer(to: a, requested: nil, hostname: "n1", at: now)
        _ = state.bind(ip("10.9.0.10"), to: a, hostname: nil, at: now)
        let json = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(state.snapshot(at: now)))
        let lease = try #require(json["leases"]?[a.description])
        #expect(lease["mac"] == .string(a.description))
        #expect(lease["ipAddress"] == "10.9.0.10")
        #expect(lease["boundFlag"] == true)
        #expect(lease["reservedFlag"] == false)
        #expect(lease["expirationTimer"] == 600)
        #expect(lease["leaseExpiresAt"] == .number((now.timeIntervalSince1970 + 600) * 1000))
        #expect(lease["nodeId"] == "02000000000a")
        #expect(json["pinned"] == .object([:]))
    }

    @Test func restoreKeepsLiveLeasesAndPins() {
        var state = makeState()
        let live = Lease(mac: a, ip: ip("10.9.0.10"), state: .bound, boundAt: now, expiresAt: now + 100, leaseSeconds: 600)
        let dead = Lease(mac: b, ip: ip("10.9.0.11"), state: .bound, boundAt: now - 1000, expiresAt: now - 1, leaseSeconds: 600)
        state.restore(leases: [live, dead], pins: [(c, ip("10.9.0.12"))], at: now)
        #expect(state.boundLease(on: ip("10.9.0.10"), at: now)?.mac == a)
        #expect(state.boundLease(on: ip("10.9.0.11"), at: now) == nil)
        #expect(state.offer(to: d, requested: nil, hostname: nil, at: now)?.ip == ip("10.9.0.11"))
    }

    @Test func allocationStaysFastWithManyLeases() {
        // A /14 pool with 100,000 leases: each new offer must not rescan the pool.
        let big = LeasePool(
            first: IPv4Address("10.64.0.1")!, last: IPv4Address("10.67.255.254")!, subnetMask: IPv4Address("255.252.0.0")!,
            serverAddress: IPv4Address("10.64.0.0")!)
        var state = LeaseState(pool: big, leaseSeconds: 600)
        var macs = Set<MACAddress>()
        for index in 0..<100_000 {
            let mac = MACAddress(bytes: [0x02, 0, UInt8(index >> 16 & 0xff), UInt8(index >> 8 & 0xff), UInt8(index & 0xff), 1])!
            macs.insert(mac)
            guard let offer = state.offer(to: mac, requested: nil, hostname: nil, at: now) else {
                Issue.record("pool exhausted at \(index)")
                return
            }
            _ = state.bind(offer.ip, to: mac, hostname: nil, at: now)
        }
        #expect(state.liveLeaseCount == 100_000)
        #expect(macs.count == 100_000)
    }
}
