import BusCore
import BusTestSupport
import DHCPService
import EventsLogger
import Foundation
import Logging
import Scheduler
import TaskGraphRunner
import Testing

/// The whole story on one machine: a "node" in a network namespace boots (a real DHCP client),
/// DHCPService binds its lease and announces it, and a graph that waited for exactly that goes on.
@Suite("Provisioning end to end: DHCP bind drives a graph", .serialized, .timeLimit(.minutes(2)))
struct ProvisioningTests {
    @Test("Graph.Wait.Dhcp.Bind waits for the node's dhcp.bind.success, then finishes")
    func dhcpBindDrivesAGraph() async throws {
        try await NetworkNamespace.with(subnet: 20) { namespace in
            let mac = "02:5e:00:00:20:01"
            let nodeID = "025e00002001"
            try await namespace.setMAC(mac)
            let dhcp = DHCPConfiguration(
                interface: namespace.hostInterface,
                pool: LeasePool(
                    first: IPv4Address("10.55.20.100")!, last: IPv4Address("10.55.20.120")!, subnetMask: IPv4Address("255.255.255.0")!,
                    serverAddress: IPv4Address(namespace.serverAddress)!),
                databasePath: ":memory:")
            try await TestBroker.withBus { bus in
                // Services log through the bus, as under `rackbus up`.
                let logs = BusLogPublisher(bus: bus)
                func logger(_ service: String) -> Logger {
                    Logger(label: "rackbus.\(service)") { label in
                        BusLogHandler(label: label, serviceName: "rackbus-\(service)", publisher: logs)
                    }
                }
                let dhcpService = DHCPService(bus: bus, configuration: dhcp, logger: logger("dhcp"))
                let runner = TaskGraphRunnerService(bus: bus, configuration: .init(database: ":memory:"), logger: logger("taskgraph"))
                let scheduler = SchedulerService(bus: bus, logger: logger("scheduler"))
                let eventsLogger = EventsLoggerService(
                    bus: bus, configuration: EventsLoggerConfiguration(journalPath: ":memory:", writesToStandardOutput: false),
                    logger: TestBroker.logger)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await logs.run() }
                    group.addTask { try await eventsLogger.run() }
                    group.addTask { try await dhcpService.run() }
                    group.addTask { try await runner.run() }
                    group.addTask { try await scheduler.run() }
                    defer { group.cancelAll() }
                    await eventsLogger.waitUntilReady()
                    await dhcpService.waitUntilReady()
                    await runner.waitUntilReady()
                    let nodeEvents = try await bus.subscribe(toNode: nodeID)
                    let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
                    let ready = try await bus.subscribe(to: .events, patterns: ["node.ready.\(nodeID)"], as: JSONValue.self)
                    let graph = try await bus.call(RunTaskGraph(name: "Graph.Wait.Dhcp.Bind", target: nodeID))
                    // The graph waits: nothing has booted yet.
                    try await Task.sleep(for: .milliseconds(500))
                    let waiting = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
                    #expect(waiting.tasks["wait-for-bind"]?.state == .running)
                    // The node boots.
                    let lease = try #require(try await namespace.requestLease(hostname: "node-twenty"))
                    let status = try await collect(finished, count: 1, timeout: .seconds(20))[0].message
                    #expect(status.graphId == graph.instanceId)
                    #expect(status.status == "succeeded")
                    let announced = try await collect(ready, count: 1)[0]
                    #expect(announced.message["nodeId"] == .string(nodeID))
                    let properties = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
                    #expect(properties.context["event"]?["ip"] == .string(lease["ip"] ?? ""), "the bind event is in the graph's context")

                    // A listener following the node saw it all, in order.
                    // graph.started, the bind, two graph.progress, node.ready (the announce task's event) and graph.finished.
                    let seen = try await collect(nodeEvents, count: 6, timeout: .seconds(10)).map(\.routingKey)
                    #expect(seen.contains("node.ready.\(nodeID)"), "\(seen)")
                    #expect(seen.first == "graph.started.\(graph.instanceId)")
                    #expect(seen.contains("dhcp.bind.success.\(nodeID)"))
                    #expect(
                        seen.firstIndex(of: "dhcp.bind.success.\(nodeID)") ?? 99 < seen.firstIndex(of: "graph.finished.\(graph.instanceId)")
                            ?? 0)

                    // The journal answers for the node: the bind, the graph's events and the log records.
                    var entries: [JournalEntry] = []
                    let deadline = ContinuousClock.now + .seconds(10)
                    repeat {
                        entries = try await bus.call(QueryEvents(nodeId: nodeID, limit: 1000))
                        if entries.contains(where: { $0.body["message"] == "graph finished" }) { break }
                        try await Task.sleep(for: .milliseconds(100))
                    } while ContinuousClock.now < deadline
                    let keys = Set(entries.map(\.routingKey))
                    #expect(keys.contains("dhcp.bind.success.\(nodeID)"), "\(keys)")
                    #expect(keys.contains("graph.finished.\(graph.instanceId)"), "\(keys)")
                    let messages = entries.filter { $0.kind == .log }.compactMap { $0.body["message"]?.stringValue }
                    #expect(messages.contains("lease bound"), "\(messages)")
                    #expect(messages.contains("graph finished"), "\(messages)")
                    // And the tools people use show the same.
                    let events = try await TestBroker.run(
                        ServiceProcess.executable.path,
                        ["events", "--node", nodeID, "--url", TestBroker.url, "--prefix", bus.configuration.exchangePrefix])
                    #expect(events.contains("dhcp.bind.success.\(nodeID)"))
                    #expect(events.contains("graph.finished.\(graph.instanceId)"))
                    let records = try await TestBroker.run(
                        ServiceProcess.executable.path,
                        [
                            "logs", "--node", nodeID, "--level", "info", "--url", TestBroker.url, "--prefix",
                            bus.configuration.exchangePrefix,
                        ])
                    #expect(records.contains("lease bound"))
                    #expect(records.contains("graph started"))
                }
            }
        }
    }
}
