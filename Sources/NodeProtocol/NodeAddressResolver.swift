import BusCore
import Synchronization

/// Finds which node a client address belongs to, over the bus: the DHCP lease of the address
/// gives its MAC (`methods.lookupIpLease` on `on.dhcp`), and the node registry the node that has
/// that MAC (`methods.getNode`); a MAC the registry does not know yet is named by its MAC-derived
/// id, the one DHCPService announces. An address without a lease is nil (`external` on the wire).
///
/// Answers are cached briefly, by address and by MAC, so that a TFTP transfer or a burst of HTTP
/// requests from one machine costs one lookup, and a lookup that fails (a service down, a
/// timeout) is nil rather than an error: events are never held up by it.
public final class NodeAddressResolver: Sendable {
    private struct Entry {
        var nodeId: String?
        var expires: ContinuousClock.Instant
    }

    private let bus: MessageBus
    private let timeout: Duration
    private let positiveTTL: Duration
    private let negativeTTL: Duration
    private let macTTL: Duration
    private let cache = Mutex<[String: Entry]>([:])
    private let cacheByMAC = Mutex<[String: Entry]>([:])

    public init(
        bus: MessageBus, timeout: Duration = .milliseconds(500), positiveTTL: Duration = .seconds(30), negativeTTL: Duration = .seconds(2),
        macTTL: Duration = .seconds(10)
    ) {
        self.bus = bus
        self.timeout = timeout
        self.positiveTTL = positiveTTL
        self.negativeTTL = negativeTTL
        self.macTTL = macTTL
    }

    /// The node id for a client's IPv4 address, or nil when no lease names it.
    public func nodeId(forAddress address: String) async -> String? {
        await Self.cached(address, in: cache, lifetime: { $0 == nil ? self.negativeTTL : self.positiveTTL }) { await lookUp(address) }
    }

    /// The node id for a MAC: the registered node that has it, else the MAC-derived id.
    public func nodeId(forMAC mac: String) async -> String? {
        guard let derived = NodeIdentity.nodeId(forMAC: mac) else { return nil }
        return await Self.cached(mac, in: cacheByMAC, lifetime: { _ in self.macTTL }) {
            (try? await bus.call(GetNode(mac), timeout: timeout))?.id ?? derived
        }
    }

    /// The cached answer for `key`, else what `lookUp` finds, kept for `lifetime(answer)`.
    private static func cached(
        _ key: String, in cache: borrowing Mutex<[String: Entry]>, lifetime: (String?) -> Duration, lookUp: () async -> String?
    ) async -> String? {
        let now = ContinuousClock.now
        if let hit = cache.withLock({ $0[key] }), hit.expires > now { return hit.nodeId }
        let found = await lookUp()
        cache.withLock { entries in
            if entries.count > 10_000 { entries.removeAll(keepingCapacity: true) }
            entries[key] = Entry(nodeId: found, expires: now + lifetime(found))
        }
        return found
    }

    private func lookUp(_ address: String) async -> String? {
        guard let reply = try? await bus.call(LeaseOwner(value: address), timeout: timeout), let mac = reply.stringValue else {
            return nil
        }
        return await nodeId(forMAC: mac)
    }
}

/// `methods.lookupIpLease` as a client sees it: the MAC as a string, or `{}` without a lease.
/// (DHCPService's own request type lives with its store; the wire is all a client needs.)
struct LeaseOwner: BusRequest {
    typealias Reply = JSONValue
    static let exchange = Exchange.dhcp
    static let method = "methods.lookupIpLease"
    static let payloadType = "IpAddress"
    var value: String
}
