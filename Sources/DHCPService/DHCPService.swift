import BusCore
import Foundation
import Logging
import Metrics
import NodeProtocol
import ServiceLifecycle
import Synchronization

/// The body of `dhcp.bind.success.<nodeId>` on `on.events`.
public struct DHCPBindEvent: Codable, Sendable, Equatable {
    public var mac: String
    public var ip: String
    public var hostname: String?
    /// The node id in the routing key: the MAC in lowercase hex without separators.
    public var nodeId: String
    /// Epoch milliseconds, like RackHD's lease fields.
    public var boundAt: Int64
    public var leaseExpiresAt: Int64
    public var leaseSeconds: UInt32

    public init(_ lease: Lease) {
        mac = lease.mac.description
        ip = lease.ip.description
        hostname = lease.hostname
        nodeId = lease.nodeID
        boundAt = Int64(((lease.boundAt ?? Date()).timeIntervalSince1970 * 1000).rounded())
        leaseExpiresAt = Int64((lease.expiresAt.timeIntervalSince1970 * 1000).rounded())
        leaseSeconds = lease.leaseSeconds
    }

    public static func routingKey(nodeID: String) -> String { "dhcp.bind.success.\(nodeID)" }
}

/// DHCPService: the lease table, its nine RPCs on `on.dhcp`, and (when an interface is
/// configured) a DHCPv4 server on UDP 67 that hands out addresses from it. A `Service`: put it
/// after the `MessageBus` in a `ServiceGroup`.
public final class DHCPService: Service, Sendable {
    public let configuration: DHCPConfiguration
    private let bus: MessageBus
    private let logger: Logger
    private let malformed = Counter(label: "rackbus_dhcp_malformed_packets_total")
    private let malformedCount = Atomic<Int>(0)
    private let answered = Counter(label: "rackbus_dhcp_replies_total")
    private let readiness = OneShotSignal()
    private let tableBox = Mutex<LeaseTable?>(nil)

    public init(bus: MessageBus, configuration: DHCPConfiguration, logger: Logger = Logger(label: "rackbus.dhcp")) {
        self.bus = bus
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        let bus = self.bus
        let logger = self.logger
        let table = try await LeaseTable.open(configuration: configuration, logger: logger) { lease in
            do {
                try await bus.publish(DHCPBindEvent(lease), to: .events, routingKey: DHCPBindEvent.routingKey(nodeID: lease.nodeID))
            } catch {
                logger.warning("could not publish a bind event", metadata: ["dhcp.mac": "\(lease.mac)", "error": "\(error)"])
            }
        }
        tableBox.withLock { $0 = table }
        let servers = try await LeaseRPCHandlers(table: table, offerHoldSeconds: Int(configuration.offerHoldSeconds)).servers(on: bus)
        let receiver: DHCPReceiver?
        let socket: DHCPSocket?
        if let interface = configuration.interface {
            let opened = try DHCPSocket(interface: interface, address: configuration.listenAddress, port: configuration.serverPort)
            socket = opened
            receiver = DHCPReceiver(socket: opened)
            logger.notice(
                "serving DHCP",
                metadata: [
                    "dhcp.interface": "\(interface)", "dhcp.pool": "\(configuration.pool.first)-\(configuration.pool.last)",
                    "dhcp.server": "\(configuration.pool.serverAddress)",
                ])
        } else {
            socket = nil
            receiver = nil
            logger.notice(
                "lease RPCs only: set an interface to serve DHCP",
                metadata: ["dhcp.pool": "\(configuration.pool.first)-\(configuration.pool.last)"])
        }
        readiness.signal()
        await withDiscardingTaskGroup { group in
            for server in servers {
                group.addTask { await server.run() }
            }
            if let receiver, let socket {
                receiver.start()
                group.addTask { await self.serve(receiver.datagrams, socket: socket, table: table) }
            }
            group.addTask {
                // Expired leases leave the table (and the store) at least once a minute.
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(30))
                    await table.purgeExpired()
                }
            }
            try? await gracefulShutdown()
            receiver?.stop()
            group.cancelAll()
        }
    }

    /// Returns once the lease table is loaded, the RPCs are consuming and the UDP socket is bound.
    /// Also returns when the waiting task is cancelled.
    public func waitUntilReady() async {
        await readiness.wait()
    }

    /// Applies a new pool range (`FIRST-LAST`) live, e.g. from the configuration exchange.
    public func updatePool(_ range: String) async throws {
        let pool = try checkPool(range)
        guard let table = leaseTable else { throw DHCPConfigurationError("the lease table is not loaded yet") }
        try await table.updatePool(first: pool.first, last: pool.last)
    }

    /// The pool `range` (`FIRST-LAST`) would give, or why this server cannot use it (not an
    /// ordered range, or not inside its subnet). Changes nothing: the configuration owner asks
    /// before it stores `dhcp.pool`.
    public func checkPool(_ range: String) throws(DHCPConfigurationError) -> LeasePool {
        let parts = range.split(separator: "-").map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 2, let first = IPv4Address(parts[0]), let last = IPv4Address(parts[1]) else {
            throw DHCPConfigurationError("a pool looks like 172.31.128.10-172.31.131.250, not \(range)")
        }
        // The subnet and the server's address never change while it runs; only the range does.
        var pool = configuration.pool
        pool.first = first
        pool.last = last
        try pool.validate()
        return pool
    }

    /// Packets dropped because they did not parse, since start.
    public var malformedPackets: Int { malformedCount.load(ordering: .relaxed) }

    /// The lease table, once `run()` has loaded it (for tools and benchmarks in the same process).
    public var leaseTable: LeaseTable? { tableBox.withLock { $0 } }

    /// Puts the client's boot file into an offer or ack: chosen by what the client is and what
    /// the node registry says about its MAC (asked only for clients that network-boot).
    private func chooseBootFile(for request: DHCPPacket, reply: inout DHCPPacket) async {
        let settings = configuration.bootSettings
        let client = BootClient(request)
        guard settings.isEnabled || settings.fixedBootFile != nil else { return }
        var node = BootNodeStatus.unavailable
        if client.isNetworkBootClient || settings.fixedBootFile != nil, let mac = request.clientMAC {
            node = await nodeStatus(mac: mac.description)
        }
        let choice = BootFileChoice.choose(client: client, node: node, settings: settings)
        BootFileChoice.apply(choice, to: &reply)
        logger.debug(
            "boot file chosen",
            metadata: [
                "dhcp.mac": "\(request.clientMAC.map { "\($0)" } ?? "?")", "dhcp.arch": "\(client.architecture.map { "\($0)" } ?? "-")",
                "dhcp.user_class": "\(client.userClass ?? "-")", "dhcp.boot": "\(choice.map { "\($0)" } ?? "none")",
            ])
    }

    private func nodeStatus(mac: String) async -> BootNodeStatus {
        do {
            let node = try await bus.call(GetNode(mac), timeout: .milliseconds(300))
            return .known(networkBoot: node.bootSettings?.allowsNetworkBoot ?? true)
        } catch  where error.remote?.status == 404 {
            return .unknown
        } catch {
            return .unavailable
        }
    }

    private func serve(_ datagrams: AsyncStream<[UInt8]>, socket: DHCPSocket, table: LeaseTable) async {
        for await datagram in datagrams {
            let request: DHCPPacket
            do {
                request = try DHCPPacket.parse(datagram)
            } catch {
                // Counted and dropped; one bad packet never stops the server.
                malformed.increment()
                malformedCount.add(1, ordering: .relaxed)
                logger.debug("dropped a malformed DHCP packet", metadata: ["dhcp.bytes": "\(datagram.count)", "error": "\(error)"])
                continue
            }
            guard var reply = await table.handle(request) else { continue }
            if reply.messageType == .offer || reply.messageType == .ack {
                await chooseBootFile(for: request, reply: &reply)
            }
            let destination = DHCPReplies.destination(of: reply, for: request, configuration: configuration)
            if socket.send(reply.serialize(), to: destination.address, port: destination.port) {
                answered.increment()
            } else {
                logger.warning(
                    "could not send a DHCP reply", metadata: ["dhcp.to": "\(destination.address)", "error": "\(DHCPSocket.errorText())"])
            }
        }
    }
}
