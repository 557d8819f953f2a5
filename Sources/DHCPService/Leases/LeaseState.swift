import BusCore
import Foundation

/// The lease table and its rules, as a pure value: every decision the DHCP server and the lease
/// RPCs make is a method here, given the current time. The `LeaseTable` actor owns one, persists
/// what changes and talks to the network; this type does no I/O, so it is tested directly.
///
/// Invariants: an address has at most one live holder; a pinned address is never offered or
/// bound to another MAC; a pinned MAC is only ever given its pinned address; declined addresses
/// rest for a while before anyone gets them.
struct LeaseState: Sendable {
    private(set) var pool: LeasePool
    let leaseSeconds: UInt32
    let offerHold: TimeInterval
    let declineHold: TimeInterval

    private(set) var leases: [MACAddress: Lease] = [:]
    private(set) var macByIP: [IPv4Address: MACAddress] = [:]
    private(set) var pins: [MACAddress: IPv4Address] = [:]
    private(set) var pinnedIPs: [IPv4Address: MACAddress] = [:]
    private(set) var declined: [IPv4Address: Date] = [:]
    /// Where the search for a free address starts, so allocation does not rescan the pool's head.
    private var cursor: UInt32 = 0

    init(pool: LeasePool, leaseSeconds: UInt32, offerHold: TimeInterval = 30, declineHold: TimeInterval = 600) {
        self.pool = pool
        self.leaseSeconds = leaseSeconds
        self.offerHold = offerHold
        self.declineHold = declineHold
    }

    // MARK: Queries

    /// The MAC holding a live lease (offered or bound) on `ip`.
    func holder(of ip: IPv4Address, at now: Date) -> MACAddress? {
        guard let mac = macByIP[ip], let lease = leases[mac], lease.ip == ip, lease.isLive(at: now) else { return nil }
        return mac
    }

    /// The live bound lease on `ip`, for `lookupIpLease`.
    func boundLease(on ip: IPv4Address, at now: Date) -> Lease? {
        guard let mac = holder(of: ip, at: now), let lease = leases[mac], lease.state == .bound else { return nil }
        return lease
    }

    func lease(for mac: MACAddress) -> Lease? { leases[mac] }

    /// Whether `mac` may have `ip`: in the pool, not the server's, not resting after a decline,
    /// not pinned to someone else, not held by someone else.
    func isAvailable(_ ip: IPv4Address, for mac: MACAddress, at now: Date) -> Bool {
        guard pool.contains(ip), ip != pool.serverAddress else { return false }
        if let until = declined[ip], until > now { return false }
        if let owner = pinnedIPs[ip], owner != mac { return false }
        if let pinned = pins[mac], pinned != ip { return false }
        if let holder = holder(of: ip, at: now), holder != mac { return false }
        return true
    }

    /// Live leases (expired ones are left out) and pins, in RackHD's `peekLeaseTable` shape.
    func snapshot(at now: Date) -> LeaseTableSnapshot {
        var records: [String: LeaseRecord] = [:]
        for lease in leases.values where lease.isLive(at: now) {
            records[lease.mac.description] = LeaseRecord(lease, offerHoldSeconds: Int(offerHold))
        }
        var pinned: [String: String] = [:]
        for (mac, ip) in pins { pinned[mac.description] = ip.description }
        return LeaseTableSnapshot(leases: records, pinned: pinned)
    }

    var liveLeaseCount: Int { leases.count }

    // MARK: DHCP

    /// DISCOVER: reserve an address for `mac` and return the offer, or nil when the pool is full.
    /// Preference: the MAC's pin, its current lease, the address it asks for, its previous
    /// address, then the next free one.
    mutating func offer(to mac: MACAddress, requested: IPv4Address?, hostname: String?, at now: Date) -> Lease? {
        let address: IPv4Address
        if let pin = pins[mac] {
            // A pinned MAC gets its address or nothing (the address may rest after a decline).
            guard isAvailable(pin, for: mac, at: now) else { return nil }
            address = pin
        } else if let preferred = [leases[mac]?.ip, requested].compactMap({ $0 }).first(where: { isAvailable($0, for: mac, at: now) }) {
            address = preferred
        } else if let free = nextFree(for: mac, at: now) {
            address = free
        } else {
            return nil
        }
        if let existing = leases[mac], existing.state == .bound, existing.ip == address, existing.isLive(at: now) {
            // Already bound there: offering it again must not shorten the binding.
            return existing
        }
        let lease = Lease(
            mac: mac, ip: address, state: .offered, hostname: hostname ?? leases[mac]?.hostname, expiresAt: now + offerHold, leaseSeconds: 0
        )
        store(lease)
        return lease
    }

    enum Binding: Equatable {
        /// Bound (or renewed); `isNew` when the MAC did not already hold this address bound.
        case bound(Lease, isNew: Bool)
        /// Refused: the client must start over (NAK), with the reason for the log.
        case refused(String)
    }

    /// REQUEST (selecting, init-reboot, renewing, rebinding): bind `ip` to `mac`.
    mutating func bind(_ ip: IPv4Address, to mac: MACAddress, hostname: String?, at now: Date) -> Binding {
        guard pool.contains(ip) else { return .refused("\(ip) is not in the pool \(pool.first)-\(pool.last)") }
        if let pin = pins[mac], pin != ip { return .refused("\(mac) is pinned to \(pin)") }
        guard isAvailable(ip, for: mac, at: now) else { return .refused("\(ip) is not available to \(mac)") }
        let previous = leases[mac]
        let isNew = !(previous?.state == .bound && previous?.ip == ip && previous?.isLive(at: now) == true)
        let lease = Lease(
            mac: mac, ip: ip, state: .bound, hostname: hostname ?? previous?.hostname, boundAt: now,
            expiresAt: now + TimeInterval(leaseSeconds), leaseSeconds: leaseSeconds)
        store(lease)
        return .bound(lease, isNew: isNew)
    }

    /// The client chose another server's offer: forget ours.
    mutating func withdrawOffer(to mac: MACAddress) {
        if let lease = leases[mac], lease.state == .offered { remove(mac) }
    }

    /// RELEASE: the client gives its address back.
    @discardableResult
    mutating func release(_ ip: IPv4Address, from mac: MACAddress) -> Lease? {
        guard let lease = leases[mac], lease.ip == ip else { return nil }
        remove(mac)
        return lease
    }

    /// DECLINE: the address is in use by someone we do not know; rest it and forget the lease.
    /// Only from the client it was offered or leased to (RFC 2131 4.3.3): otherwise any MAC could
    /// take any pool address out of service. Returns whether the DECLINE was accepted.
    @discardableResult
    mutating func decline(_ ip: IPv4Address, from mac: MACAddress, at now: Date) -> Bool {
        guard let lease = leases[mac], lease.ip == ip else { return false }
        remove(mac)
        if pool.contains(ip) { declined[ip] = now + declineHold }
        return true
    }

    /// Drops expired leases and decline rests; returns the MACs whose leases went.
    mutating func purgeExpired(at now: Date) -> [MACAddress] {
        let expired = leases.values.filter { !$0.isLive(at: now) }.map(\.mac)
        for mac in expired { remove(mac) }
        declined = declined.filter { $0.value > now }
        return expired
    }

    // MARK: RPC operations

    @discardableResult
    mutating func removeLease(for mac: MACAddress) -> Lease? {
        guard let lease = leases[mac] else { return nil }
        remove(mac)
        return lease
    }

    mutating func removeLease(on ip: IPv4Address) -> Lease? {
        guard let mac = macByIP[ip] else { return nil }
        return removeLease(for: mac)
    }

    /// `pinMac`: make the MAC's current address sticky.
    mutating func pin(mac: MACAddress, at now: Date) throws(ErrorEvent) -> Lease {
        guard let lease = leases[mac], lease.isLive(at: now) else {
            throw .notFound("No lease for \(mac) to pin; use methods.pinIp to reserve an address for it.")
        }
        try pin(mac: mac, to: lease.ip, at: now)
        return lease
    }

    /// `pinIp`: reserve `ip` for `mac`. Refused outside the pool (400), or when the address or
    /// the MAC is already pinned elsewhere or the address is held by another MAC (409).
    mutating func pin(mac: MACAddress, to ip: IPv4Address, at now: Date) throws(ErrorEvent) {
        guard pool.contains(ip), ip != pool.serverAddress else {
            throw .badRequest("\(ip) is outside the DHCP pool \(pool.first)-\(pool.last).")
        }
        if let owner = pinnedIPs[ip], owner != mac {
            throw .conflict(
                "\(ip) is already pinned to \(owner).", context: ["mac": .string(owner.description), "ip": .string(ip.description)])
        }
        if let existing = pins[mac], existing != ip {
            throw .conflict(
                "\(mac) is already pinned to \(existing); unpin it first.",
                context: ["mac": .string(mac.description), "ip": .string(existing.description)])
        }
        if let holder = holder(of: ip, at: now), holder != mac {
            throw .conflict(
                "\(ip) is leased to \(holder); remove that lease first.",
                context: ["mac": .string(holder.description), "ip": .string(ip.description)])
        }
        pins[mac] = ip
        pinnedIPs[ip] = mac
    }

    mutating func unpin(mac: MACAddress) -> IPv4Address? {
        guard let ip = pins.removeValue(forKey: mac) else { return nil }
        pinnedIPs[ip] = nil
        return ip
    }

    mutating func unpin(ip: IPv4Address) -> MACAddress? {
        guard let mac = pinnedIPs.removeValue(forKey: ip) else { return nil }
        pins[mac] = nil
        return mac
    }

    /// A new range for the pool (a live configuration change). Existing leases stay until they
    /// expire; one outside the new range is not renewed, so its client moves into the range.
    mutating func updatePool(first: IPv4Address, last: IPv4Address) throws(DHCPConfigurationError) {
        var candidate = pool
        candidate.first = first
        candidate.last = last
        try candidate.validate()
        pool = candidate
        cursor = 0
    }

    // MARK: Loading

    /// Restores persisted state (bound leases and pins) after a restart.
    mutating func restore(leases saved: [Lease], pins savedPins: [(MACAddress, IPv4Address)], at now: Date) {
        for (mac, ip) in savedPins {
            pins[mac] = ip
            pinnedIPs[ip] = mac
        }
        for lease in saved where lease.isLive(at: now) && macByIP[lease.ip] == nil {
            store(lease)
        }
    }

    // MARK: Internals

    private mutating func store(_ lease: Lease) {
        if let previous = leases[lease.mac], previous.ip != lease.ip, macByIP[previous.ip] == lease.mac {
            macByIP[previous.ip] = nil
        }
        // An expired holder of the same address loses it.
        if let other = macByIP[lease.ip], other != lease.mac {
            leases[other] = nil
        }
        leases[lease.mac] = lease
        macByIP[lease.ip] = lease.mac
    }

    private mutating func remove(_ mac: MACAddress) {
        guard let lease = leases.removeValue(forKey: mac) else { return }
        if macByIP[lease.ip] == mac { macByIP[lease.ip] = nil }
    }

    private mutating func nextFree(for mac: MACAddress, at now: Date) -> IPv4Address? {
        let size = pool.size
        var offset = cursor % size
        for _ in 0..<size {
            let candidate = IPv4Address(rawValue: pool.first.rawValue &+ offset)
            offset = (offset + 1) % size
            if isAvailable(candidate, for: mac, at: now) {
                cursor = offset
                return candidate
            }
        }
        return nil
    }
}

/// `peekLeaseTable`'s value: `{leases: {mac: lease}, pinned: {mac: ip}}`.
public struct LeaseTableSnapshot: Codable, Sendable, Equatable {
    public var leases: [String: LeaseRecord]
    public var pinned: [String: String]
}
