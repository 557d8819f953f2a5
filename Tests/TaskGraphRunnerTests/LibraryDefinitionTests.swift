import BusCore
import Foundation
import Testing

@testable import TaskGraphRunner

/// Decodes each element of an embedded JSON array on its own, so a broken entry is named in the failure.
private func libraryDecodeEach<Definition: Decodable>(_ type: Definition.Type, from json: String) throws -> [Definition] {
    let entries = try JSONDecoder().decode([JSONValue].self, from: Data(json.utf8))
    var definitions: [Definition] = []
    for (index, entry) in entries.enumerated() {
        do {
            definitions.append(try JSONDecoder().decode(type, from: JSONEncoder().encode(entry)))
        } catch {
            Issue.record("entry \(index) (\(entry["injectableName"]?.stringValue ?? "?")) does not decode: \(error)")
        }
    }
    return definitions
}

/// What the API does with a request's options: merged into the graph's, object by object.
private func libraryDeepMerge(_ base: JSONValue, over overrides: JSONValue) -> JSONValue {
    guard case .object(var merged) = base, case .object(let overriding) = overrides else { return overrides }
    for (key, value) in overriding {
        merged[key] = merged[key].map { libraryDeepMerge($0, over: value) } ?? value
    }
    return .object(merged)
}

/// The options a task gets in a graph, merged the way RackHD does for tasks without a schema (enough for these graphs):
/// task options, then overrides, then graph defaults for keys the task has, then the task's label options.
private func libraryMergedOptions(for graphTask: GraphTask, in graph: GraphDefinition, supplied: [String: JSONValue]) -> [String: JSONValue]
{
    let definition = BuiltInLibrary.task(named: graphTask.resolvedTaskName ?? "")
    var options = definition?.options ?? [:]
    options.merge(graphTask.optionOverrides ?? [:]) { _, override in override }
    guard case .object(let graphOptions) = libraryDeepMerge(.object(graph.options ?? [:]), over: .object(supplied)) else { return options }
    if case .object(let defaults) = graphOptions["defaults"] {
        for (key, value) in defaults where options.keys.contains(key) { options[key] = value }
    }
    if case .object(let labelled) = graphOptions[graphTask.label] {
        options.merge(labelled) { _, given in given }
    }
    return options
}

@Suite("Built-in library: decoding and consistency")
struct LibraryConsistencyTests {
    @Test func everyTaskDecodes() throws {
        let decoded = try libraryDecodeEach(TaskDefinition.self, from: BuiltInLibrary.taskJSON)
        #expect(decoded.count == BuiltInLibrary.tasks.count)
        #expect(decoded == BuiltInLibrary.tasks)
        #expect(BuiltInLibrary.library == BuiltInLibrary.tasks)
    }

    @Test func everyGraphDecodes() throws {
        let decoded = try libraryDecodeEach(GraphDefinition.self, from: BuiltInLibrary.graphJSON)
        #expect(decoded.count == BuiltInLibrary.graphs.count)
        #expect(decoded == BuiltInLibrary.graphs)
    }

    @Test func requiredEntriesArePresent() {
        let taskNames = Set(BuiltInLibrary.tasks.map(\.injectableName))
        for name in [
            "Task.Base.noop", "Task.noop", "Task.Base.Wait", "Task.Wait", "Task.Base.Wait.Event", "Task.Wait.Dhcp.Bind",
            "Task.Base.Event.Publish", "Task.Event.Publish", "Task.Base.Evaluate.Condition", "Task.Evaluate.Condition",
        ] {
            #expect(taskNames.contains(name), "missing \(name)")
        }
        let graphNames = Set(BuiltInLibrary.graphs.map(\.injectableName))
        for name in ["Graph.noop-example", "Graph.Wait.Dhcp.Bind", "Graph.Noop.Chain.10", "Graph.Evaluate.Example"] {
            #expect(graphNames.contains(name), "missing \(name)")
        }
    }

    @Test func injectableNamesAreUnique() {
        let taskNames = BuiltInLibrary.tasks.map(\.injectableName)
        #expect(Set(taskNames).count == taskNames.count)
        let graphNames = BuiltInLibrary.graphs.map(\.injectableName)
        #expect(Set(graphNames).count == graphNames.count)
    }

    @Test func everyTaskIsEitherABaseTaskOrImplementsOne() {
        for task in BuiltInLibrary.tasks {
            #expect(
                (task.runJob == nil) != (task.implementsTask == nil),
                "\(task.injectableName) must have exactly one of runJob and implementsTask")
            #expect(!task.friendlyName.isEmpty)
            if task.isBaseTask {
                #expect(task.runJob?.hasPrefix("Job.") == true, "\(task.injectableName)")
            } else {
                #expect(task.options != nil, "\(task.injectableName) needs options")
                #expect(task.properties != nil, "\(task.injectableName) needs properties")
            }
        }
    }

    @Test func everyReferencedBaseTaskExists() throws {
        for task in BuiltInLibrary.tasks {
            guard let baseName = task.implementsTask else { continue }
            let base = try #require(BuiltInLibrary.task(named: baseName), "\(task.injectableName) implements missing \(baseName)")
            #expect(base.isBaseTask, "\(baseName) is not a base task")
        }
    }

    @Test func everyRequiredOptionHasAPlaceInTheTask() {
        // A null default marks an option the graph must supply; a missing key would keep graph defaults out.
        for task in BuiltInLibrary.tasks {
            guard let baseName = task.implementsTask, let base = BuiltInLibrary.task(named: baseName) else { continue }
            for option in base.requiredOptions ?? [] {
                #expect(task.options?.keys.contains(option) == true, "\(task.injectableName) lacks required option \(option)")
            }
        }
    }

    @Test func everyGraphTaskNameExists() {
        for graph in BuiltInLibrary.graphs {
            for graphTask in graph.tasks {
                let name = graphTask.resolvedTaskName
                #expect(name != nil || graphTask.taskDefinition != nil, "\(graph.injectableName)/\(graphTask.label) names no task")
                if let name {
                    let task = BuiltInLibrary.task(named: name)
                    #expect(task != nil, "\(graph.injectableName)/\(graphTask.label): unknown task \(name)")
                    #expect(task?.isBaseTask == false, "\(graph.injectableName)/\(graphTask.label) must name a task, not a base task")
                }
            }
        }
    }

    @Test func labelsAreUniqueAndWaitOnLabelsExist() {
        for graph in BuiltInLibrary.graphs {
            let labels = graph.tasks.map(\.label)
            #expect(Set(labels).count == labels.count, "\(graph.injectableName) repeats a label")
            #expect(!labels.contains("anyOf"), "\(graph.injectableName) uses the reserved label anyOf")
            for graphTask in graph.tasks {
                for waited in graphTask.waitOn?.labels ?? [] {
                    #expect(labels.contains(waited), "\(graph.injectableName)/\(graphTask.label) waits on unknown \(waited)")
                    #expect(waited != graphTask.label, "\(graph.injectableName)/\(graphTask.label) waits on itself")
                }
            }
        }
    }

    @Test func graphsHaveNoCycles() {
        for graph in BuiltInLibrary.graphs {
            let waits = Dictionary(graph.tasks.map { ($0.label, $0.waitOn?.labels ?? []) }, uniquingKeysWith: { first, _ in first })
            // Kahn's algorithm: every label must be removable once what it waits on is removed.
            var remaining = waits
            while let ready = remaining.first(where: { _, waited in waited.allSatisfy { label in remaining[label] == nil } })?.key {
                remaining[ready] = nil
            }
            #expect(remaining.isEmpty, "\(graph.injectableName) has a cycle among \(remaining.keys.sorted())")
        }
    }

    @Test func graphOptionKeysAreDefaultsOrLabels() {
        for graph in BuiltInLibrary.graphs {
            let labels = Set(graph.tasks.map(\.label))
            for key in graph.options?.keys ?? [:].keys {
                #expect(key == "defaults" || labels.contains(key), "\(graph.injectableName) has options for unknown label \(key)")
            }
        }
    }

    @Test func lookupIgnoresAnAPIPrefix() {
        #expect(BuiltInLibrary.task(named: "/api/2.0/workflows/tasks/Task.noop")?.injectableName == "Task.noop")
        #expect(BuiltInLibrary.graph(named: "/api/2.0/workflows/graphs/Graph.noop-example")?.friendlyName == "noop-graph")
        #expect(BuiltInLibrary.task(named: "Task.DoesNotExist") == nil)
        #expect(BuiltInLibrary.graph(named: "Graph.DoesNotExist") == nil)
    }
}

@Suite("Built-in library: RackHD's definitions")
struct LibraryRackHDDefinitionTests {
    @Test func noopTaskEqualsRackHDs() throws {
        let rackHD = TaskDefinition(
            friendlyName: "noop", injectableName: "Task.noop", implementsTask: "Task.Base.noop",
            options: ["option1": 1, "option2": 2, "option3": 3, "delay": 0], properties: ["noop": ["foo": "bar"]])
        #expect(BuiltInLibrary.task(named: "Task.noop") == rackHD)
    }

    @Test func noopBaseTask() throws {
        let base = try #require(BuiltInLibrary.task(named: "Task.Base.noop"))
        #expect(base.runJob == "Job.noop")
        #expect(base.requiredOptions == [])
        let delay = base.optionsSchema?["properties"]?["delay"]
        #expect(delay?["type"] == "integer")
        #expect(delay?["minimum"] == 0)
    }

    @Test func evaluateConditionMatchesRackHD() throws {
        let base = try #require(BuiltInLibrary.task(named: "Task.Base.Evaluate.Condition"))
        #expect(
            base
                == TaskDefinition(
                    friendlyName: "Evaluate Condition", injectableName: "Task.Base.Evaluate.Condition", runJob: "Job.Evaluate.Condition",
                    requiredOptions: ["when"], requiredProperties: [:], properties: [:]))
        let task = try #require(BuiltInLibrary.task(named: "Task.Evaluate.Condition"))
        #expect(task.implementsTask == "Task.Base.Evaluate.Condition")
        #expect(task.options == ["when": nil])
    }

    @Test func noopExampleGraphEqualsRackHDs() throws {
        let rackHD = """
            { "injectableName": "Graph.noop-example", "friendlyName": "noop-graph",
              "tasks": [
                { "label": "noop-1", "taskName": "Task.noop" },
                { "label": "noop-2", "taskName": "Task.noop", "waitOn": { "noop-1": "finished" } },
                { "label": "parallel-noop-1", "taskName": "Task.noop", "waitOn": { "noop-2": "finished" } },
                { "label": "parallel-noop-2", "taskName": "Task.noop", "waitOn": { "noop-2": "finished" } } ] }
            """
        let expected = try JSONDecoder().decode(GraphDefinition.self, from: Data(rackHD.utf8))
        #expect(BuiltInLibrary.graph(named: "Graph.noop-example") == expected)
    }
}

@Suite("Built-in library: RackBus's tasks and graphs")
struct LibraryRackBusDefinitionTests {
    @Test func waitTasks() throws {
        let wait = try #require(BuiltInLibrary.task(named: "Task.Wait"))
        #expect(wait.implementsTask == "Task.Base.Wait")
        #expect(wait.options == ["duration": 1000])
        #expect(BuiltInLibrary.task(named: "Task.Base.Wait")?.runJob == "Job.Wait")
        #expect(BuiltInLibrary.task(named: "Task.Base.Wait")?.requiredOptions == ["duration"])

        let bind = try #require(BuiltInLibrary.task(named: "Task.Wait.Dhcp.Bind"))
        #expect(bind.implementsTask == "Task.Base.Wait.Event")
        #expect(
            bind.options == [
                "routingKey": "dhcp.bind.success.{{ options.nodeId | task.nodeId }}", "exchange": "events", "timeout": 600_000,
                "nodeId": nil,
            ])
        #expect(BuiltInLibrary.task(named: "Task.Base.Wait.Event")?.runJob == "Job.Wait.Event")
        #expect(BuiltInLibrary.task(named: "Task.Base.Wait.Event")?.requiredOptions == ["routingKey", "timeout"])
    }

    @Test func publishTask() throws {
        let publish = try #require(BuiltInLibrary.task(named: "Task.Event.Publish"))
        #expect(publish.implementsTask == "Task.Base.Event.Publish")
        #expect(publish.options == ["exchange": "events", "routingKey": nil, "payload": [:]])
        #expect(BuiltInLibrary.task(named: "Task.Base.Event.Publish")?.runJob == "Job.Event.Publish")
        #expect(BuiltInLibrary.task(named: "Task.Base.Event.Publish")?.requiredOptions == ["routingKey"])
    }

    @Test func waitForBindGraphRendersWithANodeId() throws {
        let graph = try #require(BuiltInLibrary.graph(named: "Graph.Wait.Dhcp.Bind"))
        #expect(graph.friendlyName == "Wait for a DHCP lease, then continue")
        #expect(graph.options?["defaults"] == ["nodeId": nil])
        #expect(graph.tasks.map(\.label) == ["wait-for-bind", "announce"])
        #expect(graph.tasks[1].waitOn == WaitOn(all: ["wait-for-bind": [.succeeded]]))

        let supplied: [String: JSONValue] = ["defaults": ["nodeId": "5f1c"]]
        let scope = TemplateScope(options: [:], context: [:], nodeId: "5f1c", graphId: "g-1", taskId: nil)
        let waitOptions = try OptionTemplate.renderOptions(
            libraryMergedOptions(for: graph.tasks[0], in: graph, supplied: supplied), scope: scope)
        #expect(waitOptions["routingKey"] == "dhcp.bind.success.5f1c")
        #expect(waitOptions["timeout"] == 600_000)
        let announceOptions = try OptionTemplate.renderOptions(
            libraryMergedOptions(for: graph.tasks[1], in: graph, supplied: supplied), scope: scope)
        #expect(announceOptions["routingKey"] == "node.ready.5f1c")
        #expect(announceOptions["payload"] == ["nodeId": "5f1c"])
        #expect(announceOptions["exchange"] == "events")
    }

    @Test func waitForBindGraphWithoutANodeIdFailsToRender() throws {
        let graph = try #require(BuiltInLibrary.graph(named: "Graph.Wait.Dhcp.Bind"))
        let scope = TemplateScope(options: [:], context: [:], nodeId: nil, graphId: "g-1", taskId: nil)
        // Neither the option nor the graph's target: nothing to wait for.
        #expect(throws: TemplateRenderError(message: "Value does not exist for options.nodeId | task.nodeId")) {
            try OptionTemplate.renderOptions(libraryMergedOptions(for: graph.tasks[0], in: graph, supplied: [:]), scope: scope)
        }
    }

    @Test func waitForBindGraphFallsBackToTheTarget() throws {
        let graph = try #require(BuiltInLibrary.graph(named: "Graph.Wait.Dhcp.Bind"))
        let scope = TemplateScope(options: [:], context: [:], nodeId: "525400123456", graphId: "g-1", taskId: nil)
        let options = try OptionTemplate.renderOptions(libraryMergedOptions(for: graph.tasks[0], in: graph, supplied: [:]), scope: scope)
        #expect(options["routingKey"] == "dhcp.bind.success.525400123456")
    }

    @Test func noopChainHasTenLinks() throws {
        let graph = try #require(BuiltInLibrary.graph(named: "Graph.Noop.Chain.10"))
        #expect(graph.tasks.count == 10)
        #expect(graph.tasks.allSatisfy { $0.taskName == "Task.noop" })
        #expect(graph.tasks[0].waitOn == nil)
        for index in 1..<graph.tasks.count {
            #expect(graph.tasks[index].waitOn == WaitOn(all: [graph.tasks[index - 1].label: [.finished]]))
        }
    }

    @Test func evaluateExampleBranches() throws {
        let graph = try #require(BuiltInLibrary.graph(named: "Graph.Evaluate.Example"))
        let evaluate = try #require(graph.tasks.first { $0.taskName == "Task.Evaluate.Condition" })
        #expect(evaluate.ignoreFailure == true)
        let branches = graph.tasks.filter { $0.waitOn?.labels == [evaluate.label] }
        #expect(Set(branches.compactMap { $0.waitOn?.all[evaluate.label] }) == [[.succeeded], [.failed]])
        #expect(branches.allSatisfy { $0.taskName == "Task.noop" })

        let scope = TemplateScope(options: [:], context: [:], nodeId: nil, graphId: "g-1", taskId: nil)
        let byDefault = try OptionTemplate.renderOptions(libraryMergedOptions(for: evaluate, in: graph, supplied: [:]), scope: scope)
        #expect(byDefault["when"] == "true")
        let supplied: [String: JSONValue] = [evaluate.label: ["condition": "false"]]
        let overridden = try OptionTemplate.renderOptions(libraryMergedOptions(for: evaluate, in: graph, supplied: supplied), scope: scope)
        #expect(overridden["when"] == "false")
    }
}
