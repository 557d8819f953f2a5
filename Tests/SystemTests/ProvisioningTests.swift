import BusCore
import BusTestSupport
import DHCPService
import Foundation
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
                let dhcpService = DHCPService(bus: bus, configuration: dhcp, logger: TestBroker.logger)
                let runner = TaskGraphRunnerService(bus: bus, configuration: .init(databasePath: ":memory:"), logger: TestBroker.logger)
                let scheduler = SchedulerService(bus: bus, logger: TestBroker.logger)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await dhcpService.run() }
                    group.addTask { try await runner.run() }
                    group.addTask { try await scheduler.run() }
                    defer { group.cancelAll() }
                    await dhcpService.waitUntilReady()
                    await runner.waitUntilReady()
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
                }
            }
        }
    }
}
