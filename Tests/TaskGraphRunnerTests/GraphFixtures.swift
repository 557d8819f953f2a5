import BusCore
import Foundation

@testable import TaskGraphRunner

/// Task libraries and graphs shared by the Graph* tests.
enum GraphFixtures {
    static let noopTask = TaskDefinition(
        friendlyName: "noop", injectableName: "Task.noop", implementsTask: "Task.Base.noop",
        options: ["option1": 1, "option2": 2, "option3": 3, "delay": 0], properties: ["noop": ["foo": "bar"]])
    static let noopBaseTask = TaskDefinition(
        friendlyName: "base-noop", injectableName: "Task.Base.noop", runJob: "Job.noop", requiredOptions: [])

    /// A legacy base task that needs `target` from the graph.
    static let targetedTask = TaskDefinition(
        friendlyName: "Targeted", injectableName: "Task.Targeted", implementsTask: "Task.Base.Targeted", options: ["retries": 1])
    static let targetedBaseTask = TaskDefinition(
        friendlyName: "Base Targeted", injectableName: "Task.Base.Targeted", runJob: "Job.Targeted", requiredOptions: ["target"],
        properties: ["power": ["state": "on", "method": "ipmi"]])

    /// A task whose base has an options schema, so it accepts every graph default.
    static let schemaTask = TaskDefinition(
        friendlyName: "Schema", injectableName: "Task.Schema", implementsTask: "Task.Base.Schema", options: ["mode": "fast"])
    static let schemaBaseTask = TaskDefinition(
        friendlyName: "Base Schema", injectableName: "Task.Base.Schema", runJob: "Job.Schema", optionsSchema: ["type": "object"])

    static let library = TaskLibrary([noopTask, noopBaseTask, targetedTask, targetedBaseTask, schemaTask, schemaBaseTask])

    /// A graph of `Task.noop` tasks; `waits` maps a label to its waitOn.
    static func noopGraph(
        _ labels: [String], waits: [String: WaitOn] = [:], ignoringFailure: Set<String> = [], options: [String: JSONValue]? = nil
    ) -> GraphDefinition {
        GraphDefinition(
            friendlyName: "Test", injectableName: "Graph.Test", options: options,
            tasks: labels.map { label in
                GraphTask(
                    label: label, taskName: "Task.noop", waitOn: waits[label], ignoreFailure: ignoringFailure.contains(label) ? true : nil)
            })
    }

    static func run(_ definition: GraphDefinition, library: TaskLibrary = library) throws -> GraphRun {
        GraphRun(plan: try GraphCompiler.compile(definition, library: library))
    }

    static func decode<Value: Decodable>(_ type: Value.Type, _ json: String) throws -> Value {
        try JSONDecoder().decode(type, from: Data(json.utf8))
    }

    /// RackHD's `Graph.noop-example`.
    static let noopExampleJSON = """
        { "injectableName": "Graph.noop-example", "friendlyName": "noop-graph",
          "tasks": [
            { "label": "noop-1", "taskName": "Task.noop" },
            { "label": "noop-2", "taskName": "Task.noop", "waitOn": { "noop-1": "finished" } },
            { "label": "parallel-noop-1", "taskName": "Task.noop", "waitOn": { "noop-2": "finished" } },
            { "label": "parallel-noop-2", "taskName": "/api/2.0/workflows/tasks/Task.noop", "waitOn": { "noop-2": "finished" } } ] }
        """

    /// `Graph.Discovery` as condensed in the contract (section 4.8), with the catalog chain between
    /// `catalog-bmc` and `set-boot-pxe` written out.
    static let discoveryJSON = """
        { "injectableName": "Graph.Discovery", "friendlyName": "Discovery",
          "options": {
            "bootstrap-ubuntu": { "triggerGroup": "bootstrap" },
            "finish-bootstrap-trigger": { "triggerGroup": "bootstrap" },
            "skip-reboot-post-discovery": { "skipReboot": "false", "when": "{{options.skipReboot}}" } },
          "tasks": [
            { "label": "bootstrap-ubuntu", "taskName": "Task.Linux.Bootstrap.Ubuntu" },
            { "label": "catalog-dmi", "taskName": "Task.Catalog.dmi" },
            { "label": "catalog-ohai", "taskName": "Task.Catalog.ohai", "waitOn": { "catalog-dmi": "finished" } },
            { "label": "catalog-bmc", "taskName": "Task.Catalog.bmc", "waitOn": { "catalog-ohai": "finished" }, "ignoreFailure": true },
            { "label": "set-interfaces", "taskName": "Task.Set.Interfaces", "waitOn": { "catalog-bmc": "finished" },
              "ignoreFailure": true },
            { "label": "catalog-lsall", "taskName": "Task.Catalog.lsall", "waitOn": { "set-interfaces": "finished" },
              "ignoreFailure": true },
            { "label": "catalog-megaraid", "taskName": "Task.Catalog.megaraid", "waitOn": { "catalog-lsall": "finished" },
              "ignoreFailure": true },
            { "label": "catalog-smart", "taskName": "Task.Catalog.smart", "waitOn": { "catalog-megaraid": "finished" },
              "ignoreFailure": true },
            { "label": "catalog-driveid", "taskName": "Task.Catalog.Drive.Id", "waitOn": { "catalog-smart": "finished" },
              "ignoreFailure": true },
            { "label": "catalog-lldp", "taskName": "Task.Catalog.LLDP", "waitOn": { "catalog-driveid": "finished" },
              "ignoreFailure": true },
            { "label": "set-boot-pxe", "waitOn": { "catalog-lldp": "finished" },
              "taskDefinition": { "friendlyName": "Set PXE boot", "injectableName": "Task.Node.PxeBoot",
                "implementsTask": "Task.Base.Linux.Commands",
                "options": { "commands": "sudo ipmitool chassis bootdev pxe" }, "properties": {} } },
            { "label": "skip-reboot-post-discovery", "taskName": "Task.Evaluate.Condition", "waitOn": { "set-boot-pxe": "finished" },
              "ignoreFailure": true },
            { "label": "shell-reboot", "taskName": "Task.ProcShellReboot", "waitOn": { "skip-reboot-post-discovery": "failed" } },
            { "label": "noop", "taskName": "Task.noop", "waitOn": { "skip-reboot-post-discovery": "succeeded" } },
            { "label": "finish-bootstrap-trigger", "taskName": "Task.Trigger.Send.Finish", "waitOn": { "set-boot-pxe": "finished" } },
            { "label": "node-discovered-alert", "taskName": "Task.Alert.Node.Discovered",
              "waitOn": { "finish-bootstrap-trigger": "finished" } } ] }
        """

    static let catalogChain = [
        "catalog-bmc", "set-interfaces", "catalog-lsall", "catalog-megaraid", "catalog-smart", "catalog-driveid", "catalog-lldp",
    ]

    /// Just enough of RackHD's task library for `Graph.Discovery`.
    static let discoveryLibrary: TaskLibrary = {
        func task(_ name: String, _ base: String, options: [String: JSONValue] = [:]) -> TaskDefinition {
            TaskDefinition(friendlyName: name, injectableName: name, implementsTask: base, options: options, properties: [:])
        }
        func base(_ name: String, job: String, required: [String]? = nil, schema: JSONValue? = nil) -> TaskDefinition {
            TaskDefinition(
                friendlyName: name, injectableName: name, runJob: job, requiredOptions: required, properties: [:], optionsSchema: schema)
        }
        let catalogs = [
            "Task.Catalog.dmi", "Task.Catalog.ohai", "Task.Catalog.bmc", "Task.Catalog.lsall", "Task.Catalog.megaraid",
            "Task.Catalog.smart", "Task.Catalog.Drive.Id", "Task.Catalog.LLDP",
        ]
        return TaskLibrary(
            [
                noopTask, noopBaseTask,
                base("Task.Base.Linux.Bootstrap", job: "Job.Linux.Bootstrap", schema: ["type": "object"]),
                task("Task.Linux.Bootstrap.Ubuntu", "Task.Base.Linux.Bootstrap", options: ["kernelFile": "vmlinuz-1.2.0-rancher"]),
                base("Task.Base.Linux.Catalog", job: "Job.Linux.Catalog", required: ["commands"]),
                base("Task.Base.Linux.Commands", job: "Job.Linux.Commands", required: ["commands"]),
                task("Task.Set.Interfaces", "Task.Base.Linux.Commands", options: ["commands": "sudo set-interfaces"]),
                task("Task.ProcShellReboot", "Task.Base.Linux.Commands", options: ["commands": "sudo reboot"]),
                base("Task.Base.Evaluate.Condition", job: "Job.Evaluate.Condition", required: ["when"]),
                task("Task.Evaluate.Condition", "Task.Base.Evaluate.Condition"),
                base("Task.Base.Trigger", job: "Job.Trigger", required: ["triggerGroup", "triggerType"]),
                task("Task.Trigger.Send.Finish", "Task.Base.Trigger", options: ["triggerType": "finish"]),
                base("Task.Base.Alert", job: "Job.Alert"),
                task("Task.Alert.Node.Discovered", "Task.Base.Alert"),
            ] + catalogs.map { task($0, "Task.Base.Linux.Catalog", options: ["commands": .array([.string($0)])]) })
    }()
}
