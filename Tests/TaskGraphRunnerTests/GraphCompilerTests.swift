import BusCore
import Testing

@testable import TaskGraphRunner

@Suite("Graph validation: RackHD's messages")
struct GraphValidationTests {
    private func error(compiling definition: GraphDefinition, library: TaskLibrary = GraphFixtures.library) -> GraphDefinitionError? {
        do {
            _ = try GraphCompiler.compile(definition, library: library)
            return nil
        } catch {
            return error
        }
    }

    private func graph(_ tasks: [GraphTask]) -> GraphDefinition {
        GraphDefinition(friendlyName: "Test", injectableName: "Graph.Test", tasks: tasks)
    }

    @Test func duplicateLabel() {
        let definition = GraphFixtures.noopGraph(["a", "b", "a"])
        #expect(error(compiling: definition)?.message == "The task label 'a' is used more than once in the graph definition.")
        #expect(error(compiling: definition)?.status == 400)
    }

    @Test func anyOfLabelIsReserved() {
        #expect(error(compiling: GraphFixtures.noopGraph(["a", "anyOf"]))?.message == "Label anyOf is reserved, please use another label.")
    }

    @Test func waitOnMustNameATaskOfTheGraph() {
        let missing = GraphFixtures.noopGraph(["a", "b"], waits: ["b": WaitOn(all: ["ghost": [.finished]])])
        #expect(error(compiling: missing)?.message == "Task to wait on does not exist: ghost")
        let missingInAnyOf = GraphFixtures.noopGraph(["a", "b"], waits: ["b": WaitOn(anyOf: ["a": [.succeeded], "phantom": [.failed]])])
        #expect(error(compiling: missingInAnyOf)?.message == "Task to wait on does not exist: phantom")
    }

    @Test func taskNeedsExactlyOneOfTaskNameAndTaskDefinition() {
        let message = "All TaskGraph tasks should have either a taskName or taskDefinition property."
        #expect(error(compiling: graph([GraphTask(label: "neither")]))?.message == message)
        let both = GraphTask(label: "both", taskName: "Task.noop", taskDefinition: GraphFixtures.noopTask)
        #expect(error(compiling: graph([both]))?.message == message)
        #expect(error(compiling: graph([both]))?.status == 400)
    }

    @Test func cyclesNameTheTasksOnTheBackEdge() {
        let pair = GraphFixtures.noopGraph(
            ["a", "b"], waits: ["a": WaitOn(all: ["b": [.finished]]), "b": WaitOn(all: ["a": [.succeeded]])])
        #expect(error(compiling: pair)?.message == "Detected a cyclic graph with tasks a and b")
        let selfWait = GraphFixtures.noopGraph(["root", "loop"], waits: ["loop": WaitOn(all: ["loop": [.failed]])])
        #expect(error(compiling: selfWait)?.message == "Detected a cyclic graph with tasks loop and loop")
        let throughAnyOf = GraphFixtures.noopGraph(
            ["a", "b", "c"],
            waits: ["a": WaitOn(all: ["c": [.finished]]), "b": WaitOn(all: ["a": [.finished]]), "c": WaitOn(anyOf: ["b": [.finished]])])
        #expect(error(compiling: throughAnyOf)?.message == "Detected a cyclic graph with tasks a and b")
    }

    @Test func requiredOptionMustBeSupplied() {
        let definition = graph([GraphTask(label: "target-me", taskName: "Task.Targeted")])
        #expect(error(compiling: definition)?.message == "required option target for task Task.Targeted in graph Graph.Test")
        #expect(error(compiling: definition)?.status == 400)

        var nullPlaceholder = definition
        nullPlaceholder.options = ["target-me": ["target": nil]]
        #expect(error(compiling: nullPlaceholder)?.message == "required option target for task Task.Targeted in graph Graph.Test")
    }

    @Test func requiredOptionIsFoundInEverySource() throws {
        var byDefaults = graph([GraphTask(label: "t", taskName: "Task.Targeted")])
        byDefaults.options = ["defaults": ["target": "node-1"]]
        #expect(error(compiling: byDefaults) == nil)

        var byTemplate = byDefaults
        byTemplate.options = ["t": ["target": "{{ options.nodeId }}"]]
        #expect(error(compiling: byTemplate) == nil)

        let byOverride = graph([GraphTask(label: "t", taskName: "Task.Targeted", optionOverrides: ["target": "node-2"])])
        #expect(error(compiling: byOverride) == nil)

        let byRequest = try GraphCompiler.compile(
            graph([GraphTask(label: "t", taskName: "Task.Targeted")]), library: GraphFixtures.library, options: ["t": ["target": "node-3"]])
        #expect(byRequest.tasks[0].options["target"] == "node-3")
    }

    @Test func unknownTaskIsNotFound() {
        let definition = graph([GraphTask(label: "a", taskName: "/api/2.0/workflows/tasks/Task.Missing")])
        let failure = error(compiling: definition)
        #expect(failure?.message == "Could not find task definition with injectableName Task.Missing")
        #expect(failure?.status == 404)
        #expect(failure?.errorEvent == ErrorEvent.notFound("Could not find task definition with injectableName Task.Missing"))
        #expect(failure?.errorEvent.name == "NotFoundError")
    }

    @Test func missingBaseTaskIsNotFound() {
        let orphan = TaskDefinition(friendlyName: "Orphan", injectableName: "Task.Orphan", implementsTask: "Task.Base.Gone", options: [:])
        let failure = error(compiling: graph([GraphTask(label: "a", taskDefinition: orphan)]))
        #expect(failure?.message == "Base task definition for Task.Base.Gone should exist")
        #expect(failure?.status == 404)
        // A task that implements another task (not a base task) has no base either.
        let stacked = TaskDefinition(friendlyName: "Stacked", injectableName: "Task.Stacked", implementsTask: "Task.noop")
        #expect(
            error(compiling: graph([GraphTask(label: "a", taskDefinition: stacked)]))?.message
                == "Base task definition for Task.noop should exist")
    }

    @Test func taskNeedsImplementsTaskAndBaseNeedsRunJob() {
        #expect(
            error(compiling: graph([GraphTask(label: "a", taskName: "Task.Base.noop")]))?.message == "implementsTask (string) is required")
        let jobless = TaskDefinition(friendlyName: "Jobless", injectableName: "Task.Base.Jobless")
        let task = TaskDefinition(friendlyName: "Uses jobless", injectableName: "Task.UsesJobless", implementsTask: "Task.Base.Jobless")
        let library = TaskLibrary([jobless, task])
        #expect(
            error(compiling: graph([GraphTask(label: "a", taskName: "Task.UsesJobless")]), library: library)?.message
                == "runJob (string) is required")
    }

    @Test func invalidDefinitionIsABadRequest() {
        let failure = error(compiling: GraphFixtures.noopGraph(["a", "a"]))
        #expect(failure?.errorEvent.name == "BadRequestError")
        #expect(failure?.errorEvent.status == 400)
        #expect(failure.map { ErrorEvent.from($0) } == failure?.errorEvent)
        #expect(failure?.description == failure?.message)
    }

    @Test func validateChecksWhatCompileChecks() throws {
        let example = try GraphFixtures.decode(GraphDefinition.self, GraphFixtures.noopExampleJSON)
        try GraphCompiler.validate(example, library: GraphFixtures.library)
        #expect(throws: GraphDefinitionError.duplicateLabel("a")) {
            try GraphCompiler.validate(GraphFixtures.noopGraph(["a", "a"]), library: GraphFixtures.library)
        }
        // Run-time options cannot help a definition: defineTaskGraph sees none.
        #expect(throws: GraphDefinitionError.missingRequiredOption("target", task: "Task.Targeted", graph: "Graph.Test")) {
            try GraphCompiler.validate(self.graph([GraphTask(label: "t", taskName: "Task.Targeted")]), library: GraphFixtures.library)
        }
    }
}

@Suite("Graph compilation: options, properties, terminal states")
struct GraphCompilationTests {
    private func compileSingle(
        _ taskName: String, label: String = "t", overrides: [String: JSONValue]? = nil, graphOptions: [String: JSONValue]? = nil,
        requestOptions: [String: JSONValue] = [:]
    ) throws -> CompiledTask {
        let definition = GraphDefinition(
            friendlyName: "Test", injectableName: "Graph.Test", options: graphOptions,
            tasks: [GraphTask(label: label, taskName: taskName, optionOverrides: overrides)])
        return try GraphCompiler.compile(definition, library: GraphFixtures.library, options: requestOptions).tasks[0]
    }

    @Test func noopExampleCompiles() throws {
        let example = try GraphFixtures.decode(GraphDefinition.self, GraphFixtures.noopExampleJSON)
        let plan = try GraphCompiler.compile(example, library: GraphFixtures.library)
        #expect(plan.tasks.map(\.label) == ["noop-1", "noop-2", "parallel-noop-1", "parallel-noop-2"])
        #expect(plan.definition == example)
        #expect(plan.options == [:])
        for task in plan.tasks {
            #expect(task.taskName == "Task.noop")
            #expect(task.friendlyName == "noop")
            #expect(task.runJob == "Job.noop")
            #expect(task.options == ["option1": 1, "option2": 2, "option3": 3, "delay": 0])
            #expect(task.properties == ["noop": ["foo": "bar"]])
            #expect(task.ignoreFailure == false)
        }
        #expect(plan.tasks.map(\.terminalOnStates) == [[], [], GraphCompiler.finishedStates, GraphCompiler.finishedStates])
        #expect(plan.tasks[1].waitOn == WaitOn(all: ["noop-1": [.finished]]))
    }

    @Test func withoutSchemaOnlyDeclaredDefaultsApply() throws {
        let task = try compileSingle("Task.Targeted", graphOptions: ["defaults": ["target": "node-1", "retries": 5, "nodeId": "n1"]])
        // `target` is a required option and `retries` a task option; `nodeId` is neither.
        #expect(task.options == ["target": "node-1", "retries": 5])
    }

    @Test func withSchemaEveryDefaultApplies() throws {
        let task = try compileSingle("Task.Schema", graphOptions: ["defaults": ["nodeId": "n1", "mode": "slow"]])
        #expect(task.options == ["mode": "slow", "nodeId": "n1"])
    }

    @Test func perLabelOptionsAlwaysApplyAndWinOverDefaults() throws {
        let task = try compileSingle(
            "Task.noop", label: "n", graphOptions: ["defaults": ["option1": 10, "option2": 20], "n": ["option2": 200, "extra": true]])
        #expect(task.options == ["option1": 10, "option2": 200, "option3": 3, "delay": 0, "extra": true])
        // Another label's options do not leak.
        let other = try compileSingle("Task.noop", label: "m", graphOptions: ["n": ["extra": true]])
        #expect(other.options["extra"] == nil)
    }

    @Test func nullPerLabelValueNeverErasesAValue() throws {
        let schema = try compileSingle(
            "Task.Schema", graphOptions: ["defaults": ["nodeId": "n1"], "t": ["nodeId": nil, "mode": nil, "fresh": nil]])
        #expect(schema.options == ["nodeId": "n1", "mode": "fast", "fresh": nil])
        let legacy = try compileSingle("Task.noop", graphOptions: ["defaults": ["option1": 10], "t": ["option1": nil, "option2": nil]])
        #expect(legacy.options["option1"] == 10)
        #expect(legacy.options["option2"] == 2)
    }

    @Test func requestOptionsAreDeepMergedOverTheDefinitions() throws {
        let definition = GraphDefinition(
            friendlyName: "Test", injectableName: "Graph.Test",
            options: ["defaults": ["option1": 10, "option2": 20], "n": ["option3": 30]],
            tasks: [GraphTask(label: "n", taskName: "Task.noop")])
        let plan = try GraphCompiler.compile(
            definition, library: GraphFixtures.library, options: ["defaults": ["option2": 21, "nodeId": "n1"], "n": ["delay": 5]])
        #expect(plan.options == ["defaults": ["option1": 10, "option2": 21, "nodeId": "n1"], "n": ["option3": 30, "delay": 5]])
        #expect(plan.tasks[0].options == ["option1": 10, "option2": 21, "option3": 30, "delay": 5])
    }

    @Test func optionOverridesMergeIntoTaskOptionsBeforeGraphOptions() throws {
        let nested = TaskDefinition(
            friendlyName: "Nested", injectableName: "Task.Nested", implementsTask: "Task.Base.noop",
            options: ["obm": ["user": "admin", "password": "secret"], "list": [1, 2, 3], "kept": "yes"])
        var library = GraphFixtures.library
        library.definitions[nested.injectableName] = nested
        let definition = GraphDefinition(
            friendlyName: "Test", injectableName: "Graph.Test", options: ["defaults": ["kept": "from defaults"]],
            tasks: [
                GraphTask(
                    label: "t", taskName: "Task.Nested", optionOverrides: ["obm": ["password": "changed"], "list": [9], "kept": "override"])
            ])
        let task = try GraphCompiler.compile(definition, library: library).tasks[0]
        #expect(task.options["obm"] == ["user": "admin", "password": "changed"])
        #expect(task.options["list"] == [9])
        #expect(task.options["kept"] == "from defaults")
        // An override makes the option known, so a default for it applies without a schema.
        let declared = try compileSingle("Task.noop", overrides: ["nodeId": nil], graphOptions: ["defaults": ["nodeId": "n1"]])
        #expect(declared.options["nodeId"] == "n1")
    }

    @Test func propertiesMergeTaskOverBase() throws {
        let task = TaskDefinition(
            friendlyName: "Props", injectableName: "Task.Props", implementsTask: "Task.Base.Targeted", options: ["target": "x"],
            properties: ["power": ["method": "redfish"], "os": "linux"])
        let definition = GraphDefinition(
            friendlyName: "Test", injectableName: "Graph.Test", tasks: [GraphTask(label: "p", taskDefinition: task)])
        let compiled = try GraphCompiler.compile(definition, library: GraphFixtures.library).tasks[0]
        #expect(compiled.properties == ["power": ["state": "on", "method": "redfish"], "os": "linux"])
        #expect(compiled.taskName == "Task.Props")
        #expect(compiled.runJob == "Job.Targeted")
    }

    @Test func terminalOnStatesFollowWhatDownstreamWaitsFor() throws {
        func terminal(_ waits: WaitOn) throws -> [TaskState] {
            let plan = try GraphCompiler.compile(GraphFixtures.noopGraph(["1", "2"], waits: ["2": waits]), library: GraphFixtures.library)
            #expect(plan.tasks[1].terminalOnStates == [.cancelled, .failed, .succeeded, .timeout])
            return plan.tasks[0].terminalOnStates
        }
        #expect(try terminal(WaitOn(all: ["1": [.finished]])) == [])
        #expect(try terminal(WaitOn(all: ["1": [.failed]])) == [.cancelled, .succeeded, .timeout])
        #expect(try terminal(WaitOn(all: ["1": [.succeeded, .timeout]])) == [.cancelled, .failed])
        #expect(try terminal(WaitOn(anyOf: ["1": [.succeeded]])) == [.cancelled, .failed, .timeout])
        #expect(try terminal(WaitOn(all: ["1": [.failed, .finished]])) == [])
    }

    @Test func terminalOnStatesCombineSeveralDownstreamTasks() throws {
        let definition = GraphFixtures.noopGraph(
            ["check", "on-success", "on-failure"],
            waits: ["on-success": WaitOn(all: ["check": [.succeeded]]), "on-failure": WaitOn(all: ["check": [.failed]])])
        let plan = try GraphCompiler.compile(definition, library: GraphFixtures.library)
        #expect(plan.tasks[0].terminalOnStates == [.cancelled, .timeout])
    }

    @Test func finishedNextToOtherStatesCollapses() throws {
        let plan = try GraphCompiler.compile(
            GraphFixtures.noopGraph(
                ["1", "2"], waits: ["2": WaitOn(all: ["1": [.succeeded, .finished]], anyOf: ["1": [.finished, .failed]])]),
            library: GraphFixtures.library)
        #expect(plan.tasks[1].waitOn == WaitOn(all: ["1": [.finished]], anyOf: ["1": [.finished]]))
    }

    @Test func discoveryCompilesLikeRackHD() throws {
        let discovery = try GraphFixtures.decode(GraphDefinition.self, GraphFixtures.discoveryJSON)
        let plan = try GraphCompiler.compile(discovery, library: GraphFixtures.discoveryLibrary, options: ["defaults": ["nodeId": "n1"]])
        let tasks = Dictionary(uniqueKeysWithValues: plan.tasks.map { ($0.label, $0) })
        #expect(tasks["skip-reboot-post-discovery"]?.terminalOnStates == [.cancelled, .timeout])
        #expect(tasks["skip-reboot-post-discovery"]?.options == ["skipReboot": "false", "when": "{{options.skipReboot}}"])
        #expect(tasks["skip-reboot-post-discovery"]?.ignoreFailure == true)
        #expect(tasks["set-boot-pxe"]?.taskName == "Task.Node.PxeBoot")
        #expect(tasks["set-boot-pxe"]?.runJob == "Job.Linux.Commands")
        #expect(tasks["set-boot-pxe"]?.terminalOnStates == [])
        #expect(tasks["finish-bootstrap-trigger"]?.options == ["triggerType": "finish", "triggerGroup": "bootstrap"])
        // The bootstrap base has a schema, so it takes every default; the catalog tasks do not.
        #expect(tasks["bootstrap-ubuntu"]?.options == ["kernelFile": "vmlinuz-1.2.0-rancher", "triggerGroup": "bootstrap", "nodeId": "n1"])
        #expect(tasks["catalog-dmi"]?.options == ["commands": ["Task.Catalog.dmi"]])
        #expect(tasks["bootstrap-ubuntu"]?.terminalOnStates == GraphCompiler.finishedStates)
    }

    @Test func planRoundTripsThroughJSON() throws {
        let discovery = try GraphFixtures.decode(GraphDefinition.self, GraphFixtures.discoveryJSON)
        let plan = try GraphCompiler.compile(discovery, library: GraphFixtures.discoveryLibrary)
        let encoded = try WireFormat.encode(plan)
        #expect(try WireFormat.decode(GraphPlan.self, from: encoded) == plan)
    }
}
