import BusCore
import BusTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

/// `scripts/broker cluster`: three RabbitMQ nodes on this machine, joined into one cluster
/// (under scripts/test, a cluster of its own: RACKBUS_CLUSTER_DIR, _NAME and _PORT).
@Suite("scripts/broker cluster: three local nodes in one cluster", .serialized, .timeLimit(.minutes(10)))
struct BrokerClusterTests {
    /// `cluster status`: one line per node, `node N NAME URL running|stopped member=yes|no`.
    struct Status {
        var text: String
        var allRunning: Bool
        var running: [Int] { nodes { $0.contains(" running ") } }
        var members: [Int] { nodes { $0.hasSuffix(" member=yes") } }

        private func nodes(_ test: (Substring) -> Bool) -> [Int] {
            // A failure's message puts the command before the first line: start at "node ".
            text.split(separator: "\n").compactMap { line in line.range(of: "node ").map { line[$0.lowerBound...] } }
                .filter { $0.hasSuffix(" member=yes") || $0.hasSuffix(" member=no") }
                .filter(test).compactMap { Int($0.split(separator: " ")[1]) }
        }
    }

    static func status() async throws -> Status {
        do {
            return Status(text: try await TestBroker.brokerScript("cluster", "status"), allRunning: true)
        } catch let failure as TestFailure {
            // Exit status 1: not every node is a running member; the lines are in the message.
            return Status(text: failure.description, allRunning: false)
        }
    }

    /// The nodes' AMQP URLs, from `cluster env`'s comma-separated RACKBUS_AMQP_URL.
    static func urls() async throws -> [String] {
        let env = try await TestBroker.brokerScript("cluster", "env")
        guard let line = env.split(separator: "\n").first(where: { $0.hasPrefix("export RACKBUS_AMQP_URL=") }) else {
            throw TestFailure("cluster env printed \(env)")
        }
        return line.dropFirst("export RACKBUS_AMQP_URL=".count).split(separator: ",").map(String.init)
    }

    static func withNode<Result: Sendable>(
        _ url: String, prefix: String, _ body: @Sendable (MessageBus) async throws -> Result
    ) async throws -> Result {
        var configuration = try BusConfiguration(url: url)
        configuration.exchangePrefix = prefix
        configuration.connectionName = "rackbus-tests-cluster"
        return try await MessageBus.withBus(configuration: configuration, logger: TestBroker.logger) { bus in
            try await bus.waitUntilConnected(timeout: .seconds(30))
            return try await body(bus)
        }
    }

    @Test("start joins three running members; a stopped node shows stopped, and rejoins when started again")
    func startStopRejoin() async throws {
        // Alone: three nodes and a load on two cores would starve the other tests' timing.
        try await TestBroker.withExclusiveBroker {
            do {
                try await Self.exercise()
            } catch {
                _ = try? await TestBroker.brokerScript("cluster", "stop")
                throw error
            }
            try await TestBroker.brokerScript("cluster", "stop")
            #expect(try await Self.status().running.isEmpty)
        }
    }

    static func exercise() async throws {
        let clock = ContinuousClock()
        let startedAt = clock.now
        try await TestBroker.brokerScript("cluster", "start")
        let started = try await status()
        #expect(started.allRunning, "\(started.text)")
        #expect(started.running == [1, 2, 3], "\(started.text)")
        #expect(started.members == [1, 2, 3], "\(started.text)")
        print("cluster start took \(clock.now - startedAt)")
        // Idempotent: a second start finds it up and changes nothing.
        try await TestBroker.brokerScript("cluster", "start")

        let urls = try await urls()
        #expect(urls.count == 3)
        #expect(urls.allSatisfy { $0.hasPrefix("amqp://") }, "\(urls)")
        // One cluster: a durable queue declared through node 1 is there on node 3.
        let prefix = TestBroker.uniquePrefix()
        let queue = "\(prefix).cluster-check"
        try await withNode(urls[0], prefix: prefix) { bus in
            try await bus.declareWorkQueue(named: queue, bindings: [(.events, "cluster.check")])
        }
        let onNode3 = try await withNode(urls[2], prefix: prefix) { bus in try await bus.inspectQueue(named: queue).name }
        #expect(onNode3 == queue)

        // Users are cluster-wide: made through node 1, each URL list names all three nodes, and
        // the DHCP user connects to node 3.
        let users = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-cluster-users-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: users) }
        try await TestBroker.brokerScript("cluster", "users", "--prefix", prefix, "--user-prefix", "\(prefix)-", "--out", users.path)
        let dhcpEnv = try String(contentsOf: users.appendingPathComponent("dhcp.env"), encoding: .utf8)
        let dhcpURLs = dhcpEnv.dropFirst("RACKBUS_AMQP_URL=".count).trimmingCharacters(in: .newlines).split(separator: ",").map(String.init)
        #expect(dhcpURLs.count == 3)
        #expect(zip(dhcpURLs, urls).allSatisfy { URLComponents(string: $0)?.port == URLComponents(string: $1)?.port }, "\(dhcpURLs)")
        let dhcpOnNode3 = try await withNode(dhcpURLs[2], prefix: prefix) { bus in bus.isConnected }
        #expect(dhcpOnNode3)

        try await TestBroker.brokerScript("cluster", "stop-node", "2")
        let degraded = try await status()
        #expect(!degraded.allRunning)
        #expect(degraded.running == [1, 3], "\(degraded.text)")
        #expect(degraded.members == [1, 2, 3], "a stopped node is still a member: \(degraded.text)")

        try await TestBroker.brokerScript("cluster", "start-node", "2")
        let rejoined = try await status()
        #expect(rejoined.allRunning, "\(rejoined.text)")
        #expect(rejoined.running == [1, 2, 3], "\(rejoined.text)")
        // It has the cluster's state, and serves clients again.
        try await withNode(urls[1], prefix: prefix) { bus in
            #expect(try await bus.inspectQueue(named: queue).name == queue)
            try await bus.deleteQueue(named: queue)
        }
        try await failover(urls: urls)
        try await failoverUnderLoad(urls: urls)
    }

    /// Graphs and calls go on while the node the services use stops; then it rejoins.
    static func failoverUnderLoad(urls: [String]) async throws {
        let list = urls.joined(separator: ",")
        var configuration = try BusConfiguration(url: list)
        configuration.exchangePrefix = TestBroker.uniquePrefix()
        configuration.connectionName = "rackbus-tests-load"
        configuration.workQueueType = .quorum
        let stoppedNode = Mutex<Int?>(nil)
        let outcome = try await FailoverUnderLoad.run(
            configuration: configuration, url: list, environment: ["RACKBUS_QUEUE_TYPE": "quorum"]
        ) {
            port in
            #expect(port != nil, "found the node the services are connected to")
            let node = (port.flatMap { port in urls.firstIndex { URLComponents(string: $0)?.port == port } } ?? 0) + 1
            stoppedNode.withLock { $0 = node }
            try await TestBroker.brokerScript("cluster", "stop-node", "\(node)")
        }
        FailoverUnderLoad.check(outcome, graphs: 40, longestGap: .seconds(2))
        let node = try #require(stoppedNode.withLock { $0 })
        try await TestBroker.brokerScript("cluster", "start-node", "\(node)")
        let rejoined = try await status()
        #expect(rejoined.allRunning && rejoined.members == [1, 2, 3], "node \(node) rejoined: \(rejoined.text)")
    }

    /// A caller and a server given all three addresses; the node the caller is connected to
    /// stops. Calls answer again within 2 s, and the node rejoins when it starts again.
    static func failover(urls: [String]) async throws {
        var configuration = try BusConfiguration(url: urls.joined(separator: ","))
        configuration.exchangePrefix = TestBroker.uniquePrefix()
        configuration.connectionName = "rackbus-tests-failover"
        let both = configuration
        try await MessageBus.withBus(configuration: configuration, logger: TestBroker.logger) { serverBus in
            try await MessageBus.withBus(configuration: both, logger: TestBroker.logger) { bus in
                try await serverBus.waitUntilConnected(timeout: .seconds(30))
                try await bus.waitUntilConnected(timeout: .seconds(30))
                let server = try await serverBus.server(for: ClusterPing.self) { request, _ in request.text }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { await server.run() }
                    defer { group.cancelAll() }
                    _ = try await retryingUntilAnswered(within: .seconds(10)) {
                        try await bus.call(ClusterPing(text: "up"), timeout: .seconds(1))
                    }
                    let port = try #require(bus.connectedEndpoint?.port)
                    let node = try #require(urls.firstIndex { URLComponents(string: $0)?.port == port }) + 1
                    let clock = ContinuousClock()
                    let stopped = StopFlag()
                    let stopping = Task {
                        defer { stopped.value.withLock { $0 = true } }
                        return try await TestBroker.brokerScript("cluster", "stop-node", "\(node)")
                    }
                    // Calls go on throughout: the longest stretch without an answer is the outage.
                    var lastAnswer = clock.now
                    var longestGap = Duration.zero
                    let deadline = clock.now + .seconds(40)
                    while clock.now < deadline {
                        if (try? await bus.call(ClusterPing(text: "ping"), timeout: .milliseconds(300))) != nil {
                            longestGap = max(longestGap, clock.now - lastAnswer)
                            lastAnswer = clock.now
                        } else {
                            try await Task.sleep(for: .milliseconds(20))
                        }
                        if stopped.value.withLock({ $0 }), clock.now - lastAnswer < .milliseconds(100), bus.connectedEndpoint?.port != port
                        {
                            break
                        }
                    }
                    _ = try await stopping.value
                    print("RPC outage while node \(node) stopped: \(longestGap)")
                    #expect(bus.connectedEndpoint != nil && bus.connectedEndpoint?.port != port, "moved to another node")
                    #expect(longestGap < .seconds(2), "calls answered again within 2 s (took \(longestGap))")
                    try await TestBroker.brokerScript("cluster", "start-node", "\(node)")
                    let rejoined = try await status()
                    #expect(rejoined.allRunning && rejoined.members == [1, 2, 3], "\(rejoined.text)")
                }
            }
        }
    }

    @Test("a start that cannot start a node (its port taken) stops the nodes it started and says why")
    func failedStartCleansUp() async throws {
        try await TestBroker.withExclusiveBroker {
            // From scratch: nodes that were clustered wait minutes at boot for the one that
            // stopped last, and that may be node 2, which cannot start here.
            try await TestBroker.brokerScript("cluster", "clean")
            let node2 = try #require(URLComponents(string: try await Self.urls()[1])?.port)
            let blocker = try PortBlocker(port: node2)
            defer { blocker.close() }
            do {
                try await TestBroker.brokerScript("cluster", "start")
                Issue.record("cluster start succeeded with 127.0.0.1:\(node2) taken")
            } catch let failure as TestFailure {
                #expect(failure.description.contains("port 127.0.0.1:\(node2) is already in use"), "\(failure)")
                #expect(failure.description.contains("stopping node(s) 1 2 3 again"), "\(failure)")
            }
            let after = try await Self.status()
            #expect(after.running.isEmpty, "\(after.text)")
        }
    }
}

/// Set once the node has stopped.
final class StopFlag: Sendable {
    let value = Mutex(false)
}

/// The failover test's call: answered with its text.
struct ClusterPing: BusRequest {
    typealias Reply = String
    static let exchange = Exchange.events
    static let method = "methods.clusterPing"
    var text: String
}

/// A TCP listener on 127.0.0.1:`port` that accepts nothing: the port is taken while it exists.
final class PortBlocker: Sendable {
    private let socket: Int32

    init(port: Int) throws {
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var reuse: Int32 = 1
        setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(socket, 1) == 0 else {
            Glibc.close(socket)
            throw TestFailure("cannot listen on 127.0.0.1:\(port)")
        }
    }

    func close() {
        Glibc.close(socket)
    }
}
