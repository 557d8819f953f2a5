import BusCore
import BusTestSupport
import Foundation
import Scheduler
import Testing

@testable import TaskGraphRunner

@Suite("Node-scoped task RPCs", .timeLimit(.minutes(2)))
struct NodeRequestTests {
    @Test("a running task answers for its node, and stops answering once its graph is cancelled")
    func answersWhileRunningOnly() async throws {
        try await withWorkflowServices { bus in
            let graph = GraphDefinition(
                friendlyName: "boot", injectableName: "Graph.Test.Boot",
                tasks: [
                    GraphTask(
                        label: "boot", taskName: "Task.Wait",
                        optionOverrides: ["duration": 30000, "profile": "linux.ipxe", "kernel": "vmlinuz"])
                ])
            _ = try await bus.call(DefineTaskGraph(definition: graph))
            let started = try await bus.call(RunTaskGraph(name: "Graph.Test.Boot", target: "node-9"))
            let active = try await retryingUntilAnswered(within: .seconds(30)) {
                try await bus.call(ActiveTaskExists(nodeId: "node-9"), timeout: .milliseconds(500))
            }
            #expect(active.graphId == started.instanceId)
            #expect(active.label == "boot")
            #expect(try await bus.call(RequestProfile(nodeId: "node-9")) == "linux.ipxe")
            #expect(try await bus.call(GetBootProfile(nodeId: "node-9")) == "linux.ipxe")
            #expect(try await bus.call(RequestProperties(nodeId: "node-9"))["kernel"] == "vmlinuz")
            // Another node gets no answer.
            let other = await #expect(throws: BusError.self) {
                _ = try await bus.call(ActiveTaskExists(nodeId: "node-10"), timeout: .milliseconds(300))
            }
            #expect(other?.code == .timeout)

            _ = try await bus.call(CancelTaskGraph(filter: GraphFilter(target: "node-9")))
            try await Task.sleep(for: .milliseconds(300))
            let stale = await #expect(throws: BusError.self) {
                _ = try await bus.call(RequestProfile(nodeId: "node-9"), timeout: .milliseconds(500))
            }
            #expect(stale?.code == .timeout, "a cancelled graph's task must not answer")
        }
    }

    @Test("requestCommands hands out the task's commands; respondCommands finishes it")
    func commands() async throws {
        try await withWorkflowServices { bus in
            let finished = try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self)
            _ = try await bus.call(
                DefineTask(
                    definition: TaskDefinition(
                        friendlyName: "Linux commands", injectableName: "Task.Base.Test.Commands", runJob: "Job.Linux.Commands",
                        requiredOptions: ["commands"])))
            _ = try await bus.call(
                DefineTask(
                    definition: TaskDefinition(
                        friendlyName: "catalog", injectableName: "Task.Test.Catalog", implementsTask: "Task.Base.Test.Commands",
                        options: ["commands": ["sudo dmidecode", ["command": "lsblk"]]], properties: [:])))
            _ = try await bus.call(
                DefineTaskGraph(
                    definition: GraphDefinition(
                        friendlyName: "catalog", injectableName: "Graph.Test.Catalog",
                        tasks: [GraphTask(label: "catalog", taskName: "Task.Test.Catalog")])))
            let graph = try await bus.call(RunTaskGraph(name: "Graph.Test.Catalog", target: "node-11"))
            let commands = try await retryingUntilAnswered(within: .seconds(30)) {
                try await bus.call(RequestCommands(nodeId: "node-11"), timeout: .milliseconds(500))
            }
            #expect(commands.identifier == "node-11")
            #expect(commands.tasks == [["cmd": "sudo dmidecode"], ["command": "lsblk", "cmd": "lsblk"]])
            try await bus.publish(
                RespondCommands.Body(value: ["tasks": [["cmd": "sudo dmidecode", "stdout": "ok", "error": nil]]]), to: .task,
                routingKey: RespondCommands.routingKey(nodeId: "node-11"), type: "Result")
            #expect(try await finishedStatus(finished) == "succeeded")
            let properties = try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graph.instanceId)))
            #expect(properties.context["commandResults"] != nil)
        }
    }

    @Test("with two task runners on the bus, a node's RPCs are answered by the runner that runs its task")
    func twoRunners() async throws {
        try await TestBroker.withBus { bus in
            // The graph runner without tasks, and two task runners that take one task each
            // (prefetch 1, and the tasks wait), one of them on a connection of its own (same prefix).
            let graphs = TaskGraphRunnerService(
                bus: bus, configuration: .init(database: ":memory:", runsTasks: false), logger: TestBroker.logger)
            let scheduler = SchedulerService(bus: bus, logger: TestBroker.logger)
            try await MessageBus.withBus(configuration: bus.configuration, logger: TestBroker.logger) { other in
                try await other.waitUntilConnected(timeout: .seconds(30))
                let first = TaskRunner(bus: bus, concurrency: 1, logger: TestBroker.logger)
                let second = TaskRunner(bus: other, concurrency: 1, logger: TestBroker.logger)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await graphs.run() }
                    group.addTask { try await scheduler.run() }
                    group.addTask { try await first.run() }
                    group.addTask { try await second.run() }
                    defer { group.cancelAll() }
                    await graphs.waitUntilReady()
                    _ = try await bus.call(
                        DefineTaskGraph(
                            definition: GraphDefinition(
                                friendlyName: "wait", injectableName: "Graph.Test.NodeWait",
                                tasks: [GraphTask(label: "wait", taskName: "Task.Wait", optionOverrides: ["duration": 30000])])))
                    var graphIDs: [String: String] = [:]
                    for node in ["node-a", "node-b"] {
                        graphIDs[node] = try await bus.call(RunTaskGraph(name: "Graph.Test.NodeWait", target: node)).instanceId
                    }
                    for node in ["node-a", "node-b"] {
                        _ = try await retryingUntilAnswered(within: .seconds(30)) {
                            try await bus.call(ActiveTaskExists(nodeId: node), timeout: .milliseconds(500))
                        }
                    }
                    // Each runner holds one of the tasks, so a request reaching the wrong runner
                    // would go unanswered (a timeout) instead of being answered by its task. Runs
                    // of calls per node, not alternating ones, which a queue shared round-robin by
                    // both runners could happen to route right.
                    for node in ["node-a", "node-b", "node-a"] {
                        for call in 0..<20 {
                            let active = try await bus.call(ActiveTaskExists(nodeId: node), timeout: .seconds(2))
                            #expect(active.graphId == graphIDs[node], "call \(call), \(node)")
                        }
                    }
                    _ = try await bus.call(CancelTaskGraph(filter: GraphFilter(target: "node-a")))
                    _ = try await bus.call(CancelTaskGraph(filter: GraphFilter(target: "node-b")))
                }
            }
        }
    }
}
