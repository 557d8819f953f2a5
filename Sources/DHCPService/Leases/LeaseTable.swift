import BusCore
import Foundation
import Logging

/// The lease table: one actor owns the ``LeaseState``, persists what must survive a restart
/// before anyone is told about it, and reports new bindings. Both the UDP server and the lease
/// RPCs go through it, so they always agree.
public actor LeaseTable {
    public let configuration: DHCPConfiguration
    private var state: LeaseState
    private let store: LeaseStore
    private let logger: Logger
    private let onBind: @Sendable (Lease) async -> Void

    private init(
        configuration: DHCPConfiguration, state: LeaseState, store: LeaseStore, logger: Logger,
        onBind: @escaping @Sendable (Lease) async -> Void
    ) {
        self.configuration = configuration
        self.state = state
        self.store = store
        self.logger = logger
        self.onBind = onBind
    }

    /// Opens the store and loads the leases and pins it holds.
    public static func open(
        configuration: DHCPConfiguration, logger: Logger, onBind: @escaping @Sendable (Lease) async -> Void = { _ in }
    ) async throws -> LeaseTable {
        try configuration.validate()
        let store = try await LeaseStore.open(path: configuration.databasePath)
        var state = LeaseState(
            pool: configuration.pool, leaseSeconds: configuration.leaseSeconds, offerHold: TimeInterval(configuration.offerHoldSeconds),
            declineHold: TimeInterval(configuration.declineHoldSeconds))
        let saved = try await store.load()
        state.restore(leases: saved.leases, pins: saved.pins, at: Date())
        logger.info(
            "lease table loaded",
            metadata: [
                "dhcp.leases": "\(state.liveLeaseCount)", "dhcp.pins": "\(state.pins.count)",
                "dhcp.database": "\(configuration.databasePath)",
            ])
        return LeaseTable(configuration: configuration, state: state, store: store, logger: logger, onBind: onBind)
    }

    // MARK: DHCP

    /// Answers one client packet; `nil` means no reply (RELEASE, DECLINE, another server chosen,
    /// a full pool).
    public func handle(_ request: DHCPPacket, now: Date = Date()) async -> DHCPPacket? {
        guard request.op == 1, let mac = request.clientMAC, let type = request.messageType else { return nil }
        switch type {
        case .discover:
            guard let lease = state.offer(to: mac, requested: request.requestedIPAddress, hostname: request.hostName, at: now) else {
                logger.warning("no address to offer", metadata: ["dhcp.mac": "\(mac)"])
                return nil
            }
            return DHCPReplies.offer(to: request, lease: lease, configuration: configuration)
        case .request:
            let address: IPv4Address
            if let server = request.serverIdentifier {
                // SELECTING: the client answers one server's offer and tells every server which.
                guard server == configuration.pool.serverAddress else {
                    state.withdrawOffer(to: mac)
                    return nil
                }
                guard let requested = request.requestedIPAddress else {
                    return DHCPReplies.nak(to: request, configuration: configuration, reason: "no requested address")
                }
                address = requested
            } else if let requested = request.requestedIPAddress {
                address = requested  // INIT-REBOOT
            } else if request.ciaddr != .zero {
                address = request.ciaddr  // RENEWING or REBINDING
            } else {
                return DHCPReplies.nak(to: request, configuration: configuration, reason: "no address requested")
            }
            return await bind(address, to: mac, request: request, now: now)
        case .release:
            if let lease = state.release(request.ciaddr, from: mac), lease.state == .bound {
                await persistDeletion([mac])
            }
            return nil
        case .decline:
            if let address = request.requestedIPAddress {
                let wasBound = state.lease(for: mac)?.state == .bound
                guard state.decline(address, from: mac, at: now) else {
                    logger.info(
                        "ignored a DECLINE of an address not offered or leased to the client",
                        metadata: ["dhcp.mac": "\(mac)", "dhcp.ip": "\(address)"])
                    return nil
                }
                if wasBound { await persistDeletion([mac]) }
                logger.warning("client declined an address", metadata: ["dhcp.mac": "\(mac)", "dhcp.ip": "\(address)"])
            }
            return nil
        case .inform:
            return DHCPReplies.informAck(to: request, configuration: configuration)
        case .offer, .ack, .nak:
            return nil
        }
    }

    private func bind(_ address: IPv4Address, to mac: MACAddress, request: DHCPPacket, now: Date) async -> DHCPPacket? {
        switch state.bind(address, to: mac, hostname: request.hostName, at: now) {
        case .refused(let reason):
            logger.info("refused a request", metadata: ["dhcp.mac": "\(mac)", "dhcp.ip": "\(address)", "reason": "\(reason)"])
            return DHCPReplies.nak(to: request, configuration: configuration, reason: reason)
        case .bound(let lease, let isNew):
            do {
                // Stored before the client hears of it: no address goes to two clients, even
                // across a restart.
                try await store.saveBound(lease)
            } catch {
                logger.error("could not store a lease; not answering", metadata: ["dhcp.mac": "\(mac)", "error": "\(error)"])
                state.removeLease(for: mac)
                return nil
            }
            if isNew {
                logger.info(
                    "lease bound",
                    metadata: [
                        "node.id": "\(lease.nodeID)", "dhcp.mac": "\(mac)", "dhcp.ip": "\(lease.ip)",
                        "dhcp.hostname": "\(lease.hostname ?? "-")",
                    ])
                await onBind(lease)
            }
            return DHCPReplies.ack(to: request, lease: lease, configuration: configuration)
        }
    }

    /// Drops expired leases from memory and the store.
    public func purgeExpired(now: Date = Date()) async {
        let expired = state.purgeExpired(at: now)
        if !expired.isEmpty {
            await persistDeletion(expired)
        }
    }

    // MARK: RPC operations

    public func boundLease(on ip: IPv4Address, now: Date = Date()) -> Lease? {
        state.boundLease(on: ip, at: now)
    }

    public func isInRange(_ ip: IPv4Address) -> Bool {
        state.pool.contains(ip)
    }

    public func snapshot(now: Date = Date()) -> LeaseTableSnapshot {
        state.snapshot(at: now)
    }

    public func removeLease(for mac: MACAddress) async -> Lease? {
        guard let lease = state.removeLease(for: mac) else { return nil }
        await persistDeletion([mac])
        return lease
    }

    public func removeLease(on ip: IPv4Address) async -> Lease? {
        guard let lease = state.removeLease(on: ip) else { return nil }
        await persistDeletion([lease.mac])
        return lease
    }

    public func pin(mac: MACAddress, now: Date = Date()) async throws -> Lease {
        let lease = try state.pin(mac: mac, at: now)
        try await persistPin(mac: mac, ip: lease.ip)
        return lease
    }

    public func pin(mac: MACAddress, to ip: IPv4Address, now: Date = Date()) async throws {
        try state.pin(mac: mac, to: ip, at: now)
        try await persistPin(mac: mac, ip: ip)
    }

    public func unpin(mac: MACAddress) async throws -> IPv4Address? {
        guard let ip = state.unpin(mac: mac) else { return nil }
        try await store.deletePin(mac: mac)
        return ip
    }

    public func unpin(ip: IPv4Address) async throws -> MACAddress? {
        guard let mac = state.unpin(ip: ip) else { return nil }
        try await store.deletePin(mac: mac)
        return mac
    }

    /// Binds many leases at once without DHCP traffic (benchmarks, migrations).
    public func importBound(_ leases: [Lease], now: Date = Date()) async throws {
        var bound: [Lease] = []
        for lease in leases {
            if case .bound(let stored, _) = state.bind(lease.ip, to: lease.mac, hostname: lease.hostname, at: now) {
                bound.append(stored)
            }
        }
        try await store.saveBound(bound)
    }

    public var leaseCount: Int { state.liveLeaseCount }

    /// The pool in use now.
    public var pool: LeasePool { state.pool }

    /// Changes the pool's range while serving.
    public func updatePool(first: IPv4Address, last: IPv4Address) throws {
        try state.updatePool(first: first, last: last)
        logger.notice("DHCP pool changed", metadata: ["dhcp.pool": "\(first)-\(last)"])
    }

    private func persistPin(mac: MACAddress, ip: IPv4Address) async throws {
        do {
            try await store.savePin(mac: mac, ip: ip)
        } catch {
            _ = state.unpin(mac: mac)
            // Not an ErrorEvent: the RPC server answers a generic 500 and logs these details.
            throw LeaseStoreFailure(operation: "store the pin of \(mac) to \(ip)", underlying: error)
        }
    }

    private func persistDeletion(_ macs: [MACAddress]) async {
        do {
            try await store.deleteLeases(macs)
        } catch {
            logger.error("could not delete leases from the store", metadata: ["error": "\(error)"])
        }
    }
}

/// The lease store failed under an RPC. Its description (SQL, the file) is for the log only.
struct LeaseStoreFailure: Error, CustomStringConvertible {
    var operation: String
    var underlying: any Error
    var description: String { "could not \(operation): \(underlying)" }
}
