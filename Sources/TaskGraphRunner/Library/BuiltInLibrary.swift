import BusCore
import Foundation

/// RackBus's built-in task library and example graphs. They are written as JSON in RackHD's shape so that they
/// read like RackHD's `lib/task-data` and `lib/graphs` files; the jobs they name are implemented elsewhere.
public enum BuiltInLibrary {
    /// Every built-in task definition: base tasks (`runJob`) and the tasks that implement them.
    public static let tasks: [TaskDefinition] = decodeOrStop([TaskDefinition].self, from: taskJSON, name: "task library")

    public static let graphs: [GraphDefinition] = decodeOrStop([GraphDefinition].self, from: graphJSON, name: "graph library")

    /// All task definitions (the same list as `tasks`), under the name RackHD's library RPCs use.
    public static var library: [TaskDefinition] { tasks }

    private static let tasksByName: [String: TaskDefinition] = Dictionary(
        tasks.map { ($0.injectableName, $0) }, uniquingKeysWith: { first, _ in first })

    private static let graphsByName: [String: GraphDefinition] = Dictionary(
        graphs.map { ($0.injectableName, $0) }, uniquingKeysWith: { first, _ in first })

    /// The task or base task with this injectableName; an API path prefix (`/api/2.0/workflows/tasks/…`) is ignored.
    public static func task(named name: String) -> TaskDefinition? {
        tasksByName[name.split(separator: "/").last.map(String.init) ?? name]
    }

    /// The graph with this injectableName; an API path prefix is ignored.
    public static func graph(named name: String) -> GraphDefinition? {
        graphsByName[name.split(separator: "/").last.map(String.init) ?? name]
    }

    /// The embedded JSON is part of the source: if it does not decode, that is a programming error, which the
    /// library tests report with the decoder's message before anything touches `tasks` or `graphs`.
    private static func decodeOrStop<Value: Decodable>(_ type: Value.Type, from json: String, name: String) -> Value {
        do {
            return try JSONDecoder().decode(type, from: Data(json.utf8))
        } catch {
            preconditionFailure("The built-in \(name) does not decode: \(error)")
        }
    }

    // MARK: - Tasks

    /// Task definitions, base tasks first. `Task.Base.noop`, `Task.noop` and `Task.Base.Evaluate.Condition` are
    /// RackHD's; the others follow RackHD's conventions for RackBus's own jobs. A `null` option is one the graph
    /// must supply.
    static let taskJSON = #"""
        [
            {
                "friendlyName": "base-noop",
                "injectableName": "Task.Base.noop",
                "runJob": "Job.noop",
                "requiredOptions": [],
                "requiredProperties": {},
                "properties": { "noop": { "type": "null" } },
                "optionsSchema": {
                    "type": "object",
                    "properties": {
                        "delay": { "type": "integer", "minimum": 0, "description": "Milliseconds to wait before succeeding" },
                        "option1": {},
                        "option2": {},
                        "option3": {}
                    }
                }
            },
            {
                "friendlyName": "noop",
                "injectableName": "Task.noop",
                "implementsTask": "Task.Base.noop",
                "options": { "option1": 1, "option2": 2, "option3": 3, "delay": 0 },
                "properties": { "noop": { "foo": "bar" } }
            },
            {
                "friendlyName": "base-wait",
                "injectableName": "Task.Base.Wait",
                "runJob": "Job.Wait",
                "requiredOptions": ["duration"],
                "requiredProperties": {},
                "properties": {}
            },
            {
                "friendlyName": "Wait",
                "injectableName": "Task.Wait",
                "implementsTask": "Task.Base.Wait",
                "options": { "duration": 1000 },
                "properties": {}
            },
            {
                "friendlyName": "base-wait-event",
                "injectableName": "Task.Base.Wait.Event",
                "runJob": "Job.Wait.Event",
                "requiredOptions": ["routingKey", "timeout"],
                "requiredProperties": {},
                "properties": {}
            },
            {
                "friendlyName": "Wait for DHCP bind",
                "injectableName": "Task.Wait.Dhcp.Bind",
                "implementsTask": "Task.Base.Wait.Event",
                "options": {
                    "routingKey": "dhcp.bind.success.{{ options.nodeId | task.nodeId }}",
                    "exchange": "events",
                    "timeout": 600000,
                    "nodeId": null
                },
                "properties": {}
            },
            {
                "friendlyName": "base-event-publish",
                "injectableName": "Task.Base.Event.Publish",
                "runJob": "Job.Event.Publish",
                "requiredOptions": ["routingKey"],
                "requiredProperties": {},
                "properties": {}
            },
            {
                "friendlyName": "Publish an event",
                "injectableName": "Task.Event.Publish",
                "implementsTask": "Task.Base.Event.Publish",
                "options": { "exchange": "events", "routingKey": null, "payload": {} },
                "properties": {}
            },
            {
                "friendlyName": "Evaluate Condition",
                "injectableName": "Task.Base.Evaluate.Condition",
                "runJob": "Job.Evaluate.Condition",
                "requiredOptions": ["when"],
                "requiredProperties": {},
                "properties": {}
            },
            {
                "friendlyName": "Evaluate Condition",
                "injectableName": "Task.Evaluate.Condition",
                "implementsTask": "Task.Base.Evaluate.Condition",
                "options": { "when": null },
                "properties": {}
            },
            {
                "friendlyName": "base-wait-completion-uri",
                "injectableName": "Task.Base.Wait.Completion.Uri",
                "runJob": "Job.Wait.Completion.Uri",
                "requiredOptions": ["completionUri"],
                "requiredProperties": {},
                "properties": {}
            },
            {
                "friendlyName": "Wait for a completion URI",
                "injectableName": "Task.Wait.Completion.Uri",
                "implementsTask": "Task.Base.Wait.Completion.Uri",
                "options": { "completionUri": null, "profile": null, "timeout": 600000 },
                "properties": {}
            },
            {
                "friendlyName": "Discover a node's SMBIOS from iPXE",
                "injectableName": "Task.Discovery.Ipxe.Smbios",
                "implementsTask": "Task.Base.Wait.Completion.Uri",
                "options": { "profile": "discovery.ipxe", "completionUri": "catalogs/smbios", "timeout": 600000 },
                "properties": { "catalog": { "type": "smbios" } }
            },
            {
                "friendlyName": "base-sku-assign",
                "injectableName": "Task.Base.Sku.Assign",
                "runJob": "Job.Sku.Assign",
                "requiredOptions": [],
                "requiredProperties": {},
                "properties": {}
            },
            {
                "friendlyName": "Assign a SKU",
                "injectableName": "Task.Sku.Assign",
                "implementsTask": "Task.Base.Sku.Assign",
                "options": {},
                "properties": {}
            }
        ]
        """#

    // MARK: - Graphs

    /// Example graphs. In `Graph.Wait.Dhcp.Bind` the `announce` task lists `nodeId: null` among its overrides:
    /// without an options schema a task only takes the graph defaults whose keys it already has.
    static let graphJSON = #"""
        [
            {
                "friendlyName": "noop-graph",
                "injectableName": "Graph.noop-example",
                "tasks": [
                    { "label": "noop-1", "taskName": "Task.noop" },
                    { "label": "noop-2", "taskName": "Task.noop", "waitOn": { "noop-1": "finished" } },
                    { "label": "parallel-noop-1", "taskName": "Task.noop", "waitOn": { "noop-2": "finished" } },
                    { "label": "parallel-noop-2", "taskName": "Task.noop", "waitOn": { "noop-2": "finished" } }
                ]
            },
            {
                "friendlyName": "Wait for a DHCP lease, then continue",
                "injectableName": "Graph.Wait.Dhcp.Bind",
                "options": { "defaults": { "nodeId": null } },
                "tasks": [
                    { "label": "wait-for-bind", "taskName": "Task.Wait.Dhcp.Bind" },
                    {
                        "label": "announce",
                        "taskName": "Task.Event.Publish",
                        "optionOverrides": {
                            "routingKey": "node.ready.{{ options.nodeId | task.nodeId }}",
                            "payload": { "nodeId": "{{ options.nodeId | task.nodeId }}" },
                            "nodeId": null
                        },
                        "waitOn": { "wait-for-bind": "succeeded" }
                    }
                ]
            },
            {
                "friendlyName": "Ten noops in a chain",
                "injectableName": "Graph.Noop.Chain.10",
                "tasks": [
                    { "label": "noop-1", "taskName": "Task.noop" },
                    { "label": "noop-2", "taskName": "Task.noop", "waitOn": { "noop-1": "finished" } },
                    { "label": "noop-3", "taskName": "Task.noop", "waitOn": { "noop-2": "finished" } },
                    { "label": "noop-4", "taskName": "Task.noop", "waitOn": { "noop-3": "finished" } },
                    { "label": "noop-5", "taskName": "Task.noop", "waitOn": { "noop-4": "finished" } },
                    { "label": "noop-6", "taskName": "Task.noop", "waitOn": { "noop-5": "finished" } },
                    { "label": "noop-7", "taskName": "Task.noop", "waitOn": { "noop-6": "finished" } },
                    { "label": "noop-8", "taskName": "Task.noop", "waitOn": { "noop-7": "finished" } },
                    { "label": "noop-9", "taskName": "Task.noop", "waitOn": { "noop-8": "finished" } },
                    { "label": "noop-10", "taskName": "Task.noop", "waitOn": { "noop-9": "finished" } }
                ]
            },
            {
                "friendlyName": "Evaluate a condition and branch",
                "injectableName": "Graph.Evaluate.Example",
                "options": {
                    "evaluate-condition": { "condition": "true", "when": "{{options.condition}}" }
                },
                "tasks": [
                    { "label": "evaluate-condition", "taskName": "Task.Evaluate.Condition", "ignoreFailure": true },
                    { "label": "when-true", "taskName": "Task.noop", "waitOn": { "evaluate-condition": "succeeded" } },
                    { "label": "when-false", "taskName": "Task.noop", "waitOn": { "evaluate-condition": "failed" } }
                ]
            },
            {
                "friendlyName": "Discover a node without a microkernel",
                "injectableName": "Graph.Discovery",
                "tasks": [
                    { "label": "discover-smbios", "taskName": "Task.Discovery.Ipxe.Smbios" },
                    { "label": "assign-sku", "taskName": "Task.Sku.Assign", "waitOn": { "discover-smbios": "succeeded" } }
                ]
            }
        ]
        """#
}
