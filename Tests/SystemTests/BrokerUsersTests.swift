import BusCore
import BusTestSupport
import ConfigurationService
import DHCPService
import EventsLogger
import Foundation
import NodeProtocol
import NodeRegistry
import TaskGraphRunner
import Testing

/// The users `scripts/broker users` makes on the test broker, under an exchange prefix and user
/// names of the test's own (`<prefix>-dhcp`, …), with their environment files in a scratch folder.
/// They stay on the broker until its next `clean` (scripts/test starts with one).
struct BrokerUsers: Sendable {
    static let services = ["configuration", "dhcp", "taskgraph", "scheduler", "eventslogger", "nodes", "tftp", "http"]

    let prefix: String
    let folder: URL

    static func make() async throws -> BrokerUsers {
        let prefix = TestBroker.uniquePrefix()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-users-\(UUID().uuidString)")
        try await TestBroker.brokerScript("users", "--prefix", prefix, "--user-prefix", "\(prefix)-", "--out", folder.path)
        return BrokerUsers(prefix: prefix, folder: folder)
    }

    func removeFolder() {
        try? FileManager.default.removeItem(at: folder)
    }

    /// The service's `RACKBUS_AMQP_URL`, from the environment file made for it.
    func url(_ service: String) throws -> String {
        let text = try String(contentsOf: folder.appendingPathComponent("\(service).env"), encoding: .utf8)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("RACKBUS_AMQP_URL=") }) else {
            throw TestFailure("\(service).env has no RACKBUS_AMQP_URL")
        }
        return String(line.dropFirst("RACKBUS_AMQP_URL=".count))
    }

    /// Like ``TestBroker/configuration(prefix:name:)``, as the service's user.
    func configuration(_ service: String) throws -> BusConfiguration {
        var configuration = try BusConfiguration(url: url(service))
        configuration.exchangePrefix = prefix
        configuration.connectionName = "rackbus-tests-\(service)"
        configuration.defaultCallTimeout = .seconds(10)
        configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(1))
        return configuration
    }

    /// Plain AMQP (pika) as the service's user: one result per operation, "ok", "unroutable" or
    /// the reply code the broker closed the channel with (see Tests/Interop/pika_access.py).
    func tryRaw(_ service: String, _ operations: [[String]]) async throws -> [JSONValue] {
        let script = TestBroker.repositoryRoot.appendingPathComponent("Tests/Interop/pika_access.py").path
        let json = String(decoding: try JSONEncoder().encode(operations), as: UTF8.self)
        let output = try await TestBroker.run("/usr/bin/env", ["python3", script, try url(service), json])
        guard case .array(let results) = try JSONDecoder().decode(JSONValue.self, from: Data(output.utf8)) else {
            throw TestFailure("pika_access.py printed \(output)")
        }
        return results
    }
}

@Suite("Least privilege on the broker: a user per service (scripts/broker users)", .serialized, .timeLimit(.minutes(5)))
struct BrokerUsersTests {
    @Test("DHCPService's user cannot publish runTaskGraph nor read the task graph runner's queues, and can do DHCPService's work")
    func dhcpUser() async throws {
        // Held throughout: its scripts need the broker up, so a restart test must not run meanwhile.
        try await BrokerLock.shared.withShared { try await dhcpUserHoldingTheBroker() }
    }

    func dhcpUserHoldingTheBroker() async throws {
        let users = try await BrokerUsers.make()
        defer { users.removeFolder() }
        let prefix = users.prefix
        // The task graph runner and the node registry run as guest: only the DHCP side is restricted.
        try await TestBroker.withBus(try TestBroker.configuration(prefix: prefix)) { bus in
            let runner = TaskGraphRunnerService(bus: bus, configuration: .init(database: ":memory:"), logger: TestBroker.logger)
            let registry = NodeRegistryService(
                bus: bus, configuration: NodeRegistryConfiguration(databasePath: ":memory:"), logger: TestBroker.logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await runner.run() }
                group.addTask { try await registry.run() }
                defer { group.cancelAll() }
                await runner.waitUntilReady()
                await registry.waitUntilReady()
                try await MessageBus.withBus(configuration: try users.configuration("dhcp"), logger: TestBroker.logger) { dhcpBus in
                    try await dhcpBus.waitUntilConnected(timeout: .seconds(30))
                    try await Self.refusals(dhcpBus: dhcpBus, guestBus: bus, prefix: prefix)
                    try await Self.dhcpWork(dhcpBus: dhcpBus, guestBus: bus)
                }
                // The same refusals in plain AMQP, without BusCore's declares in front: publish
                // (write on the exchange) and basic.consume on queues that exist (read).
                let graphQueue = "\(prefix).task-graph-runner:\(RunTaskGraph.method)"
                let results = try await users.tryRaw(
                    "dhcp",
                    [
                        ["publish", "\(prefix).task-graph-runner", RunTaskGraph.method, #"{"name":"Graph.Noop.Chain.10"}"#, "Object"],
                        ["consume", WorkflowQueues.name(WorkflowQueues.taskRunner, prefix: prefix)],
                        ["consume", "\(prefix).\(TaskGraphRunnerService.finishedQueueName)"],
                        ["consume", graphQueue],
                        ["publish", "\(prefix).events", "graph.finished.forged", "{}", "Object"],
                        ["publish", "\(prefix).configuration", "methods.set", "{}", "Object"],
                        ["publish", "\(prefix).http", "methods.registerNode", "{}", "Object"],
                        // The exchanges are declared once, by the administrator: no service may delete one.
                        ["delete_exchange", "\(prefix).task"],
                    ])
                #expect(results == [403, 403, 403, 403, 403, 403, 403, 403])
                // RPC servers answer through the default exchange, so every server's user may
                // write to it, and RabbitMQ cannot limit that exchange by queue: the request
                // reaches the runner's queue by name. The runner refuses it, since it did not come
                // through the exchange whose permissions the broker checks.
                try await MessageBus.withBus(configuration: try users.configuration("dhcp"), logger: TestBroker.logger) { dhcpBus in
                    try await dhcpBus.waitUntilConnected(timeout: .seconds(30))
                    let refused = await #expect(throws: BusError.self) {
                        _ = try await dhcpBus.callRaw(
                            exchangeNamed: "", routingKey: graphQueue, body: Array(#"{"name":"Graph.Noop.Chain.10"}"#.utf8),
                            timeout: .seconds(10))
                    }
                    #expect(refused?.code == .remote)
                    #expect(refused?.status == 403, "\(String(describing: refused))")
                }
                #expect(try await bus.call(GetActiveTaskGraphs()).isEmpty, "a graph was started")
                // The same user can put a run into the runners' work queue by name, and the broker
                // cannot stop it; the runner refuses it, since it did not come through the task exchange.
                let finished = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self)
                let runs = WorkflowQueues.name(WorkflowQueues.taskRunner, prefix: prefix)
                func run(_ taskId: String) throws -> String {
                    let spec = TaskSpec(
                        taskId: taskId, graphId: "forged-graph", graphName: "Graph.Forged", label: "noop", taskName: "Task.noop",
                        job: "Job.noop", options: [:], context: [:], nodeId: nil, timeoutMs: 0)
                    return String(decoding: try JSONEncoder().encode(spec), as: UTF8.self)
                }
                let forged = "forged-\(UUID().uuidString)"
                #expect(try await users.tryRaw("dhcp", [["publish", "", runs, try run(forged), "Object"]]) == ["ok"])
                // A run the Scheduler's way, through the task exchange, after it in the same queue: once
                // its report is in, the runner has handled the forged one before it.
                let genuine = "genuine-\(UUID().uuidString)"
                try await bus.publishRawConfirmed(
                    body: Array(try run(genuine).utf8), toExchangeNamed: bus.name(of: .task), routingKey: WorkflowKeys.run(genuine),
                    type: "Object", persistent: true)
                var reported: [String] = []
                for await report in finished {
                    reported.append(report.message.taskId)
                    if report.message.taskId == genuine { break }
                }
                #expect(reported == [genuine], "the forged run was run")
                #expect(try await bus.inspectQueue(named: runs).messages == 0, "the forged run was left in the queue")
            }
        }
        // --delete removes them all again.
        try await TestBroker.brokerScript("users", "--delete", "--user-prefix", "\(prefix)-")
        let listed = try await TestBroker.brokerScript("ctl", "-q", "list_users", "--no-table-headers")
        #expect(!listed.contains("\(prefix)-"), "\(listed)")
    }

    /// BusCore as DHCPService's user: a confirmed publish of `runTaskGraph` fails with the
    /// broker's 403, a call never reaches the runner (no graph starts), and a consumer on the
    /// runners' work queue is refused.
    static func refusals(dhcpBus: MessageBus, guestBus: MessageBus, prefix: String) async throws {
        let published = await #expect(throws: BusError.self) {
            try await dhcpBus.publishConfirmed(
                RunTaskGraph(name: "Graph.Noop.Chain.10"), to: .taskGraphRunner, routingKey: RunTaskGraph.method)
        }
        #expect(published?.code == .channelClosed)
        #expect(published?.replyCode == 403)
        #expect(published?.message.contains("ACCESS_REFUSED") == true, "\(published?.message ?? "")")

        let called = await #expect(throws: BusError.self) {
            _ = try await dhcpBus.call(RunTaskGraph(name: "Graph.Noop.Chain.10"), timeout: .seconds(2))
        }
        #expect(called?.code == .timeout)
        #expect(try await guestBus.call(GetActiveTaskGraphs()).isEmpty, "a graph was started")

        let consumed = await #expect(throws: BusError.self) {
            _ = try await dhcpBus.workQueue(
                named: WorkflowQueues.name(WorkflowQueues.taskRunner, prefix: prefix), bindings: WorkflowQueues.taskRunnerBindings,
                as: JSONValue.self)
        }
        #expect(consumed?.replyCode == 403)
        let graphRequests = await #expect(throws: BusError.self) {
            _ = try await dhcpBus.subscribe(to: .taskGraphRunner, patterns: ["methods.#"], as: JSONValue.self)
        }
        #expect(graphRequests?.replyCode == 403)
    }

    /// What DHCPService does over the bus, as its user: it serves the lease RPCs (here to a
    /// guest caller), asks the registry about a MAC, and announces a bind.
    static func dhcpWork(dhcpBus: MessageBus, guestBus: MessageBus) async throws {
        let service = DHCPService(
            bus: dhcpBus, configuration: DHCPConfiguration(databasePath: ":memory:"), logger: TestBroker.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await service.run() }
            defer { group.cancelAll() }
            await service.waitUntilReady()
            #expect(try await guestBus.call(IpInRange(ip: "172.31.128.20")) == true)
            #expect(try await guestBus.call(PeekLeaseTable()).leases.isEmpty)

            let registered = try await guestBus.call(RegisterNode(macs: ["52:54:00:12:00:01"]))
            #expect(try await dhcpBus.call(GetNode("52:54:00:12:00:01")).id == registered.node.id)

            let binds = try await guestBus.subscribe(to: .events, patterns: ["dhcp.bind.success.*"], as: JSONValue.self)
            try await dhcpBus.publishConfirmed(
                ["mac": "52:54:00:12:00:01"] as JSONValue, to: .events, routingKey: "dhcp.bind.success.525400120001")
            #expect(try await collect(binds, count: 1).first?.routingKey == "dhcp.bind.success.525400120001")
        }
    }

    @Test("Every service runs as its own user (rackbus up --services X) and serves: the patterns are not too tight")
    func everyServiceAsItsOwnUser() async throws {
        try await BrokerLock.shared.withShared { try await everyServiceHoldingTheBroker() }
    }

    func everyServiceHoldingTheBroker() async throws {
        let users = try await BrokerUsers.make()
        defer { users.removeFolder() }
        let prefix = users.prefix
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-own-users-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let tftpPort = try HTTPProbe.freePort()
        let httpPort = try HTTPProbe.freePort()
        let apiPort = try HTTPProbe.freePort()
        // deploy/: each unit reads /etc/rackbus/credentials/<service>.env after rackbus.env (so its
        // RACKBUS_AMQP_URL is the one), the file `scripts/broker users` writes for that service, and
        // rackbus.env holds no broker URL of its own.
        let units = try DeployUnitsTests.units()
        #expect(Set(units.map(\.service)) == Set(BrokerUsers.services))
        for unit in units {
            let text = try String(
                contentsOf: DeployUnitsTests.deployFolder.appendingPathComponent("systemd/rackbus-\(unit.service).service"), encoding: .utf8
            )
            let shared = try #require(text.range(of: "EnvironmentFile=/etc/rackbus/rackbus.env\n"))
            let own = try #require(text.range(of: "EnvironmentFile=/etc/rackbus/credentials/\(unit.service).env\n"), "\(unit.service)")
            #expect(shared.upperBound <= own.lowerBound, "\(unit.service): its credentials must come after rackbus.env")
        }
        let shared = try String(contentsOf: DeployUnitsTests.deployFolder.appendingPathComponent("rackbus.env"), encoding: .utf8)
        #expect(!shared.split(separator: "\n").contains { $0.hasPrefix("RACKBUS_AMQP_URL=") })

        let processes = try units.map(\.service).map { service in
            // The URL comes from the environment, as from a unit's EnvironmentFile.
            ServiceProcess(
                arguments: [
                    "--services", service, "--prefix", prefix, "--log-level", "info",
                    "--configuration-database", scratch.appendingPathComponent("configuration.sqlite").path,
                    "--dhcp-database", scratch.appendingPathComponent("dhcp.sqlite").path,
                    "--taskgraph-database", scratch.appendingPathComponent("taskgraph.sqlite").path,
                    "--nodes-database", scratch.appendingPathComponent("nodes.sqlite").path,
                    "--events-database", scratch.appendingPathComponent("events.sqlite").path,
                    "--tftp-root", scratch.appendingPathComponent("tftp").path, "--tftp-listen", "127.0.0.1:\(tftpPort)",
                    "--http-listen", "127.0.0.1:\(httpPort)", "--http-api-listen", "127.0.0.1:\(apiPort)",
                ],
                logFile: scratch.appendingPathComponent("\(service).log"),
                environment: ["RACKBUS_AMQP_URL": try users.url(service), "RACKBUS_BOOT_HTTP_URL": "http://127.0.0.1:\(httpPort)"])
        }
        var operatorConfiguration = try users.configuration("operator")
        operatorConfiguration.connectionName = "rackbus-cli"
        try await TestBroker.withBus(operatorConfiguration) { bus in
            for process in processes { try process.start() }
            do {
                try await Self.exercise(bus: bus, tftpPort: tftpPort, httpPort: httpPort, apiPort: apiPort, scratch: scratch)
            } catch {
                for process in processes { await process.stop() }
                for service in BrokerUsers.services {
                    let log = (try? String(contentsOf: scratch.appendingPathComponent("\(service).log"), encoding: .utf8)) ?? ""
                    Issue.record("\(service): \(log.suffix(1500))")
                }
                throw error
            }
            for process in processes { await process.stop() }
        }
        // Not one refusal anywhere: a declare, bind, publish or consume the broker refused shows
        // in the service's log (BusCore logs every channel the broker closes).
        for service in BrokerUsers.services {
            let log = try String(contentsOf: scratch.appendingPathComponent("\(service).log"), encoding: .utf8)
            for sign in ["ACCESS_REFUSED", "closed a channel", "refused by the broker", "different flags"] {
                #expect(!log.contains(sign), "\(service) logged \(sign): \(log.suffix(1500))")
            }
        }
    }

    /// Drives every service through its bus work, as the operator (the rackbus tool's user).
    static func exercise(bus: MessageBus, tftpPort: Int, httpPort: Int, apiPort: Int, scratch: URL) async throws {
        // All eight announce themselves (presence on on.events).
        try await eventually(timeout: .seconds(90), pollingEvery: .milliseconds(500)) {
            let online = Set(try await bus.presence(wait: .seconds(1)).map(\.announcement.service))
            return online.isSuperset(of: BrokerUsers.services)
        }
        // configuration: methods.set and methods.get, and the change broadcast.
        _ = try await retryingUntilAnswered(within: .seconds(30)) {
            try await bus.call(SetConfiguration(key: "custom.users", value: 7), timeout: .seconds(2))
        }
        #expect(try await bus.call(GetConfiguration(key: "custom.users"))["custom.users"]?.value == 7)
        // Every process applies logging.level live and logs that it did, to on.logging.
        _ = try await bus.call(SetConfiguration(key: ConfigurationKeys.logLevel, value: "info"))
        // dhcp: the lease RPCs.
        #expect(
            try await retryingUntilAnswered(within: .seconds(30)) {
                try await bus.call(IpInRange(ip: "172.31.128.20"), timeout: .seconds(2))
            })
        // configuration and dhcp: a dhcp.pool change is checked by DHCPService (methods.validate.dhcp),
        // stored, broadcast, and applied.
        _ = try await bus.call(SetConfiguration(key: ConfigurationKeys.dhcpPool, value: "172.31.130.1-172.31.130.50"))
        try await eventually { try await bus.call(IpInRange(ip: "172.31.130.20")) }
        let refused = await #expect(throws: BusError.self) {
            _ = try await bus.call(SetConfiguration(key: ConfigurationKeys.dhcpPool, value: "10.9.9.1-10.9.9.9"))
        }
        #expect(refused?.status == 400, "DHCPService refuses a pool outside its subnet")

        // taskgraph and scheduler: a ten-task chain runs to the end.
        let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
        let chain = try await bus.call(RunTaskGraph(name: "Graph.Noop.Chain.10"))
        let chainEnd = try await collect(finished, count: 1, timeout: .seconds(60))
        #expect(chainEnd.first?.message.graphId == chain.instanceId)
        #expect(chainEnd.first?.message.status == "succeeded")

        // http, nodes, taskgraph: an unknown machine asks what to boot, is registered, runs
        // Graph.Discovery (its profile from the task runner), reports SMBIOS, gets its SKU check.
        let mac = "52:54:00:12:00:02"
        let nodeId = "525400120002"
        let sku = SKUDefinition(name: "acme-p1", rules: [SKURule(path: "smbios.manufacturer", equals: "Acme")])
        #expect(try await bus.call(DefineSKU(sku)) == sku)
        let skus = try await bus.subscribe(to: .events, patterns: ["sku.assigned.\(nodeId)"], as: JSONValue.self)
        let profile = try await HTTPProbe.get(port: httpPort, path: "/api/current/profiles?macs=\(mac)")
        #expect(profile.status == 200)
        #expect(profile.body.contains("discovering node \(nodeId)"), "\(profile.body)")
        let report = try await HTTPProbe.get(
            port: httpPort, path: "/api/current/catalogs/smbios?macs=52-54-00-12-00-02&manufacturer=Acme&product=P1&serial=S1&uuid=u1")
        #expect(report.status == 200)
        #expect(try await collect(skus, count: 1, timeout: .seconds(30)).first?.message["sku"] == "acme-p1")
        let discovery = try await collect(finished, count: 1, timeout: .seconds(30))
        #expect(discovery.first?.message.nodeId == nodeId)
        #expect(discovery.first?.message.status == "succeeded")

        // http's management API, as its user: the graph library and the active graphs (taskgraph),
        // and removing the node once its graph has ended (nodes, which announces it).
        let library = try await HTTPProbe.get(port: apiPort, path: "/api/current/workflows/graphs")
        #expect(library.status == 200 && library.body.contains("Graph.noop-example"), "\(library.body)")
        #expect(try await HTTPProbe.get(port: apiPort, path: "/api/current/workflows").status == 200)

        // tftp: a transfer (it asks dhcp and nodes who the client is) and its event.
        try await TestBroker.run(
            "/usr/bin/env",
            [
                "busybox", "tftp", "-g", "-r", "boot.ipxe", "-l", scratch.appendingPathComponent("boot.ipxe").path, "127.0.0.1",
                "\(tftpPort)",
            ])

        let removed = try await HTTPProbe.get(port: apiPort, path: "/api/current/nodes/\(nodeId)", method: "DELETE")
        #expect(removed.status == 200, "\(removed.body)")

        // eventslogger: every event above is in the journal.
        var journal: [String] = []
        do {
            try await eventually(timeout: .seconds(20), pollingEvery: .milliseconds(500)) {
                journal = try await bus.call(QueryEvents(limit: 1000, includeLogs: false)).map(\.routingKey)
                return journal.contains("graph.finished.\(chain.instanceId)") && journal.contains("sku.assigned.\(nodeId)")
                    && journal.contains("http.response.\(nodeId)") && journal.contains { $0.hasPrefix("tftp.success.") }
                    && journal.contains("node.removed.\(nodeId)")
            }
        } catch {
            Issue.record("the journal holds \(journal)")
            throw error
        }
        // And the log records every service sent to on.logging.
        var logging: Set<String> = []
        do {
            try await eventually(timeout: .seconds(20), pollingEvery: .milliseconds(500)) {
                let records = try await bus.call(QueryEvents(kind: .log, limit: 10_000))
                logging = Set(records.compactMap { $0.body["name"]?.stringValue })
                return logging.isSuperset(of: BrokerUsers.services.map { "rackbus-\($0)" })
            }
        } catch {
            Issue.record("log records in the journal came from \(logging.sorted())")
            throw error
        }
    }

    @Test("deploy/broker-permissions.tsv lists exactly what scripts/broker users sets")
    func permissionsDocument() async throws {
        let printed = try await TestBroker.run(
            TestBroker.repositoryRoot.appendingPathComponent("scripts/broker").path, ["users", "--print"],
            environment: ["RACKBUS_EXCHANGE_PREFIX": "on"])
        let document = try String(
            contentsOf: DeployUnitsTests.deployFolder.appendingPathComponent("broker-permissions.tsv"), encoding: .utf8)
        #expect(document == printed, "regenerate it: scripts/broker users --print > deploy/broker-permissions.tsv")
        // --definitions, for a broker scripts/broker does not manage: files only, 0600, passwords
        // kept from one run to the next, or taken from a file the operator put there first.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-definitions-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try "chosen-by-the-operator\n".write(to: folder.appendingPathComponent("dhcp.password"), atomically: true, encoding: .utf8)
        let script = TestBroker.repositoryRoot.appendingPathComponent("scripts/broker").path
        let arguments = [
            "users", "--definitions", "--hosts", "broker.example:5672,broker2.example:5672", "--vhost", "rack/1", "--out", folder.path,
        ]
        try await TestBroker.run(script, arguments)
        let first = try String(contentsOf: folder.appendingPathComponent("http.password"), encoding: .utf8)
        try await TestBroker.run(script, arguments)
        #expect(try String(contentsOf: folder.appendingPathComponent("http.password"), encoding: .utf8) == first)
        let dhcp = try String(contentsOf: folder.appendingPathComponent("dhcp.env"), encoding: .utf8)
        #expect(
            dhcp == "RACKBUS_AMQP_URL=amqp://rackbus-dhcp:chosen-by-the-operator@broker.example:5672/rack%2F1?exchanges=passive,"
                + "amqp://rackbus-dhcp:chosen-by-the-operator@broker2.example:5672/rack%2F1?exchanges=passive\n")
        for file in try FileManager.default.contentsOfDirectory(atPath: folder.path) {
            let mode = try FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent(file).path)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(file)")
        }
        let definitions = try JSONDecoder().decode(
            JSONValue.self, from: Data(contentsOf: folder.appendingPathComponent("definitions.json")))
        guard case .array(let defined) = definitions["users"] ?? .null else { throw TestFailure("no users in definitions.json") }
        #expect(defined.count == 9)
        guard case .array(let permissions) = definitions["permissions"] ?? .null else { throw TestFailure("no permissions") }
        #expect(permissions.count == 9)
        #expect(permissions.allSatisfy { $0["vhost"] == "rack/1" })
        // The nine exchanges, declared by the import as BusCore declares them: the services only check them.
        guard case .array(let exchanges) = definitions["exchanges"] ?? .null else { throw TestFailure("no exchanges") }
        #expect(Set(exchanges.compactMap { $0["name"]?.stringValue }) == Set(Exchange.conventions.map { $0.name(prefix: "on") }))
        #expect(exchanges.allSatisfy { $0["type"] == "topic" && $0["durable"] == true && $0["vhost"] == "rack/1" })

        // Every service and the operator, each with configure, write and read.
        for user in BrokerUsers.services.map({ "rackbus-\($0)" }) + ["rackbus-operator"] {
            for kind in ["configure", "write", "read"] {
                #expect(document.contains("\(user)\t\(kind)\t^("), "\(user) \(kind)")
            }
        }
    }
}
