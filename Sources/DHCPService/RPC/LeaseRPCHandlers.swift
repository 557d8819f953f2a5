import BusCore
import Foundation

/// Serves the nine lease RPCs from a ``LeaseTable``.
struct LeaseRPCHandlers: Sendable {
    let table: LeaseTable
    let offerHoldSeconds: Int

    /// Creates the nine servers (bound and consuming when this returns).
    func servers(on bus: MessageBus) async throws -> [RPCServer] {
        let table = self.table
        let hold = offerHoldSeconds
        var servers: [RPCServer] = []
        servers.append(
            try await bus.server(for: LookupIpLease.self) { request, _ in
                let ip = try Self.ip(request.value)
                return MACOrEmpty(mac: await table.boundLease(on: ip)?.mac.description)
            })
        servers.append(
            try await bus.server(for: IpInRange.self) { request, _ in
                await table.isInRange(try Self.ip(request.value))
            })
        servers.append(
            try await bus.server(for: PeekLeaseTable.self) { _, _ in
                await table.snapshot()
            })
        servers.append(
            try await bus.server(for: RemoveLease.self) { request, _ in
                let lease = await table.removeLease(for: try Self.mac(request.value))
                return LeaseOrEmpty(lease: lease.map { LeaseRecord($0, offerHoldSeconds: hold) })
            })
        servers.append(
            try await bus.server(for: RemoveLeaseByIp.self) { request, _ in
                let lease = await table.removeLease(on: try Self.ip(request.value))
                return LeaseOrEmpty(lease: lease.map { LeaseRecord($0, offerHoldSeconds: hold) })
            })
        servers.append(
            try await bus.server(for: PinMac.self) { request, _ in
                LeaseRecord(try await table.pin(mac: try Self.mac(request.value)), offerHoldSeconds: hold)
            })
        servers.append(
            try await bus.server(for: UnpinMac.self) { request, _ in
                PinnedIP(ip: try await table.unpin(mac: try Self.mac(request.value))?.description)
            })
        servers.append(
            try await bus.server(for: PinIp.self) { request, _ in
                let mac = try Self.mac(request.value.mac)
                let ip = try Self.ip(request.value.ip)
                try await table.pin(mac: mac, to: ip)
                return PinIp.Pin(mac: mac.description, ip: ip.description)
            })
        servers.append(
            try await bus.server(for: UnpinIp.self) { request, _ in
                PinnedMAC(mac: try await table.unpin(ip: try Self.ip(request.value))?.description)
            })
        return servers
    }

    static func ip(_ text: String) throws(ErrorEvent) -> IPv4Address {
        guard let ip = IPv4Address(text) else {
            throw .badRequest(
                "Invalid IP address '\(text)': expected a dotted IPv4 address such as 172.31.128.10.", context: ["value": .string(text)])
        }
        return ip
    }

    static func mac(_ text: String) throws(ErrorEvent) -> MACAddress {
        guard let mac = MACAddress(text) else {
            throw .badRequest(
                "Invalid MAC address '\(text)': expected six colon-separated hex pairs such as 00:11:22:aa:bb:cc.",
                context: ["value": .string(text)])
        }
        return mac
    }
}
