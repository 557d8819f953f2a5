import ArgumentParser
import BusCore
import Foundation
import TaskGraphRunner

/// `rackbus graph …`: define, list, run and steer task graphs over the bus.
struct Graph: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Define, run and steer task graphs.",
        subcommands: [Define.self, List.self, Tasks.self, Run.self, Status.self, Pause.self, Resume.self, Cancel.self])

    struct Common: ParsableArguments {
        @OptionGroup var bus: BusOptions
        @Flag(help: "JSON output") var json = false

        func withBus<Result: Sendable>(_ body: @Sendable (MessageBus) async throws -> Result) async throws -> Result {
            bus.bootstrapLogging()
            let configuration = try bus.busConfiguration(connectionName: "rackbus-cli")
            do {
                return try await MessageBus.withBus(configuration: configuration) { messageBus in
                    try await messageBus.waitUntilConnected(timeout: .seconds(10))
                    return try await body(messageBus)
                }
            } catch let error as BusError {
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                throw ExitCode(error.code == .remote ? 1 : error.code == .timeout ? 3 : 4)
            }
        }

        func print<T: Encodable>(_ value: T, human: () -> String) {
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                Swift.print(String(decoding: (try? encoder.encode(value)) ?? Data(), as: UTF8.self))
            } else {
                Swift.print(human())
            }
        }
    }

    struct Define: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Define a graph (or, with --task, a task) from a JSON file.")
        @OptionGroup var common: Common
        @Argument(help: "JSON file with the definition (RackHD's schema)") var file: String
        @Flag(help: "The file holds a task definition") var task = false

        func run() async throws {
            let data = try Data(contentsOf: URL(fileURLWithPath: file))
            let isTask = task
            let name = try await common.withBus { bus in
                if isTask {
                    return try await bus.call(DefineTask(definition: try JSONDecoder().decode(TaskDefinition.self, from: data)))
                }
                return try await bus.call(DefineTaskGraph(definition: try JSONDecoder().decode(GraphDefinition.self, from: data)))
            }
            common.print(["injectableName": name]) { "defined \(name)" }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the graph library, or with --active the running graphs.")
        @OptionGroup var common: Common
        @Flag(help: "Active graph instances instead of definitions") var active = false

        func run() async throws {
            if active {
                let graphs = try await common.withBus { try await $0.call(GetActiveTaskGraphs()) }
                common.print(graphs) {
                    graphs.map { "\($0.instanceId)  \($0.status)  \($0.name)  node=\($0.target ?? "-")" }.joined(separator: "\n")
                }
            } else {
                let graphs = try await common.withBus { try await $0.call(GetTaskGraphLibrary()) }
                common.print(graphs) {
                    graphs.map { "\($0.injectableName)  \($0.friendlyName)  (\($0.tasks.count) tasks)" }.joined(separator: "\n")
                }
            }
        }
    }

    struct Tasks: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the task library.")
        @OptionGroup var common: Common

        func run() async throws {
            let tasks = try await common.withBus { try await $0.call(GetTaskLibrary()) }
            common.print(tasks) {
                tasks.map {
                    "\($0.injectableName)  \($0.friendlyName)  \($0.runJob.map { "runs \($0)" } ?? "implements \($0.implementsTask ?? "?")")"
                }
                .joined(separator: "\n")
            }
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a graph against a node.",
            discussion: "With --wait, shows each task's state as it finishes and exits non-zero unless the graph succeeds.")
        @OptionGroup var common: Common
        @Argument(help: "Graph injectableName") var name: String
        @Option(help: "Node id the graph runs against") var node: String?
        @Option(help: "Options JSON, e.g. '{\"defaults\":{\"nodeId\":\"n1\"}}'") var options: String?
        @Flag(help: "Follow the graph until it finishes") var wait = false
        @Option(
            help: """
                A key of yours for this request: run again with the same key (after a timeout, say), it \
                answers with the graph the first run started instead of starting another
                """)
        var idempotencyKey: String?

        func run() async throws {
            let options = try self.options.map { try JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8)) } ?? [:]
            let (name, node, wait, json, key) = (self.name, self.node, self.wait, common.json, idempotencyKey)
            let status = try await common.withBus { bus -> String in
                // Subscribe before running, so that no event is missed.
                let tasks = wait ? try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: TaskFinished.self) : nil
                let finished = wait ? try await bus.subscribe(to: .events, patterns: ["graph.finished.*"], as: GraphEvent.self) : nil
                let graph = try await bus.call(RunTaskGraph(name: name, options: options, target: node, idempotencyKey: key))
                Self.emit(
                    json
                        ? Self.line(["event": "started", "graphId": graph.instanceId, "name": graph.name])
                        : "started \(graph.instanceId) \(graph.name)")
                guard let tasks, let finished else { return graph.status }
                return await withTaskGroup(of: String?.self) { group in
                    group.addTask {
                        for await report in tasks where report.message.graphId == graph.instanceId {
                            let task = report.message
                            Self.emit(
                                json
                                    ? Self.line([
                                        "event": "task", "label": task.label, "state": task.state.rawValue, "error": task.error ?? "",
                                    ])
                                    : "  \(task.label): \(task.state.rawValue)\(task.error.map { " (\($0))" } ?? "")")
                        }
                        return nil
                    }
                    group.addTask {
                        for await event in finished where event.message.graphId == graph.instanceId {
                            return event.message.status
                        }
                        return "unknown"
                    }
                    while let next = await group.next() {
                        if let status = next {
                            group.cancelAll()
                            return status
                        }
                    }
                    return "unknown"
                }
            }
            if wait {
                Self.emit(json ? Self.line(["event": "finished", "status": status]) : "finished: \(status)")
                if status != "succeeded" { throw ExitCode(1) }
            }
        }

        static func emit(_ line: String) {
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
        }

        static func line(_ object: [String: String]) -> String {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return String(decoding: (try? encoder.encode(object)) ?? Data(), as: UTF8.self)
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a graph instance: status, context and each task's state.")
        @OptionGroup var common: Common
        @Argument(help: "Graph instance id") var id: String

        func run() async throws {
            let id = self.id
            let properties = try await common.withBus { try await $0.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: id))) }
            common.print(properties) {
                var lines = [
                    "\(properties.instanceId)  \(properties.definition.injectableName)  \(properties.status)  node=\(properties.target ?? "-")"
                ]
                for task in properties.tasks.values.sorted(by: { $0.label < $1.label }) {
                    lines.append("  \(task.label)  \(task.name)  \(task.state.rawValue)\(task.error.map { "  (\($0))" } ?? "")")
                }
                return lines.joined(separator: "\n")
            }
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pause a graph: running tasks finish, nothing new starts.")
        @OptionGroup var common: Common
        @Argument(help: "Graph instance id") var id: String

        func run() async throws {
            let id = self.id
            let reply = try await common.withBus { try await $0.call(PauseTaskGraph(filter: GraphFilter(instanceId: id))) }
            common.print(reply) { "paused \(id)" }
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Resume a paused graph.")
        @OptionGroup var common: Common
        @Argument(help: "Graph instance id") var id: String

        func run() async throws {
            let id = self.id
            let reply = try await common.withBus { try await $0.call(ResumeTaskGraph(filter: GraphFilter(instanceId: id))) }
            common.print(reply) { "resumed \(id)" }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a graph (by instance id, or --node).")
        @OptionGroup var common: Common
        @Argument(help: "Graph instance id") var id: String?
        @Option(help: "Cancel the active graph of this node") var node: String?

        func validate() throws {
            guard (id == nil) != (node == nil) else { throw ValidationError("give a graph instance id or --node") }
        }

        func run() async throws {
            let filter = GraphFilter(instanceId: id, target: node)
            let cancelled = try await common.withBus { try await $0.call(CancelTaskGraph(filter: filter), timeout: .seconds(30)) }
            common.print(["instanceId": cancelled]) { cancelled.map { "cancelled \($0)" } ?? "no active graph matched" }
            if cancelled == nil { throw ExitCode(1) }
        }
    }
}
