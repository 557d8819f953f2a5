import BusCore
import Foundation
import Testing

@testable import TaskGraphRunner

@Suite("What a graph's decisions send")
struct ActionPlannerTests {
    let planner = ActionPlanner(exchanges: .init(scheduler: "on.scheduler", task: "on.task", events: "on.events"))

    /// `Task.noop` (a built-in job) then `Task.Schema` (`Job.Schema`, which only an external worker has).
    func instance(options: [String: JSONValue] = [:], tasks: [GraphTask]? = nil) throws -> GraphInstance {
        let definition = GraphDefinition(
            friendlyName: "Planned", injectableName: "Graph.Planned",
            tasks: tasks ?? [
                GraphTask(label: "builtin", taskName: "Task.noop"),
                GraphTask(label: "external", taskName: "Task.Schema"),
            ])
        let plan = try GraphCompiler.compile(definition, library: GraphFixtures.library, options: options)
        return GraphInstance(
            id: "g1", plan: plan, run: GraphRun(plan: plan), target: "node-1",
            context: ["graphId": "g1", "graphName": "Graph.Planned", "target": "node-1", "catalog": ["big": "blob"]],
            taskIDs: Dictionary(uniqueKeysWithValues: plan.tasks.map { ($0.label, "task-\($0.label)") }), errors: [:], createdAt: Date())
    }

    func specs(_ messages: [OutboxMessage]) throws -> [String: TaskSpec] {
        var specs: [String: TaskSpec] = [:]
        for message in messages where message.routingKey == WorkflowKeys.schedule {
            let spec = try JSONDecoder().decode(TaskSpec.self, from: Data(message.body))
            specs[spec.label] = spec
        }
        return specs
    }

    @Test("a built-in job's task carries only the graph's identity of the context; an external worker's gets all of it")
    func contextOnlyWhereNeeded() throws {
        var graph = try instance()
        let messages = planner.carryOut(graph.run.begin(), on: &graph)
        let specs = try specs(messages)
        #expect(specs["builtin"]?.context == ["graphId": "g1", "graphName": "Graph.Planned", "target": "node-1"])
        #expect(specs["external"]?.context == graph.context)
        #expect(messages.allSatisfy { $0.mandatory && $0.persistent && $0.onlyWhileGraphActive && $0.exchange == "on.scheduler" })
        #expect(Set(messages.map(\.id)).count == messages.count)
    }

    @Test("a task whose options cannot render fails at once, and what its graph then decides is sent")
    func renderFailureFailsTheTask() throws {
        let tasks = [GraphTask(label: "broken", taskName: "Task.noop", optionOverrides: ["option1": "{{ options.missing.deeper }}"])]
        var graph = try instance(tasks: tasks)
        let messages = planner.carryOut(graph.run.begin(), on: &graph)
        #expect(graph.run.states["broken"] == .failed)
        #expect(graph.errors["broken"]?.hasPrefix("TemplateRenderError") == true)
        #expect(graph.run.status == .failed)
        #expect(messages.map(\.routingKey) == [WorkflowKeys.graphFinished("g1")], "nothing to schedule; the end is announced")
        #expect(messages.first?.persistent == false, "events are not persistent")
    }

    @Test("cancelling sends each running task's cancel and announces the end")
    func cancel() throws {
        var graph = try instance()
        _ = planner.carryOut(graph.run.begin(), on: &graph)
        let messages = planner.carryOut(graph.run.cancel(), on: &graph)
        let cancels = messages.filter { $0.exchange == "on.task" }
        #expect(Set(cancels.map(\.routingKey)) == [WorkflowKeys.cancel("task-builtin"), WorkflowKeys.cancel("task-external")])
        #expect(cancels.allSatisfy { $0.persistent && !$0.onlyWhileGraphActive }, "sent although the graph has ended")
        #expect(messages.last?.routingKey == WorkflowKeys.graphFinished("g1"))
    }
}
