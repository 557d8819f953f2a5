import ArgumentParser
import BusCore
import Foundation
import NodeProtocol
import WorkflowProtocol

/// `rackbus nodes list|show|boot-settings|remove`: the node registry's nodes.
struct Nodes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the registered nodes, and set what they boot.",
        discussion: "With --json, one JSON object per line. Exit status as for rackbus call: 1 remote error, 3 timeout, 4 no broker.",
        subcommands: [List.self, Show.self, SetBootSettingsVerb.self, Remove.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the nodes, oldest first.")
        @OptionGroup var common: Graph.Common

        func run() async throws {
            let nodes = try await common.withBus { try await $0.call(ListNodes()) }
            if common.json {
                for node in nodes { print(jsonLine(node)) }
                return
            }
            let header = ["ID", "NAME", "TYPE", "SKU", "MACS", "BOOT PROFILE"]
            let rows = nodes.map { node in
                [node.id, node.name, node.type, node.sku ?? "-", node.identifiers.joined(separator: ","), bootSummary(node.bootSettings)]
            }
            print(nodes.isEmpty ? "no nodes" : table([header] + rows))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a node with its boot settings and catalogs.")
        @OptionGroup var common: Graph.Common
        @Argument(help: "Node id or one of its MACs (any spelling)") var node: String

        func run() async throws {
            let idOrMAC = node
            let found = try await common.withBus { try await $0.call(GetNode(idOrMAC)) }
            print(common.json ? jsonLine(found) : describe(found))
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a node with its MACs and catalogs; refused while it runs a workflow.")
        @OptionGroup var common: Graph.Common
        @Argument(help: "Node id or one of its MACs (any spelling)") var node: String

        func run() async throws {
            let idOrMAC = node
            let removed = try await common.withBus { bus -> Node in
                let node = try await bus.call(GetNode(idOrMAC))
                if let graph = try await bus.call(GetActiveTaskGraph(filter: GraphFilter(target: node.id))) {
                    let message = "node \(node.id) runs workflow \(graph.instanceId) (\(graph.name)); cancel it first"
                    throw BusError(code: .remote, message: message, remote: .conflict(message))
                }
                return try await bus.call(RemoveNode(node.id))
            }
            print(common.json ? jsonLine(removed) : "removed \(removed.id) (\(removed.identifiers.joined(separator: ",")))")
        }
    }

    struct SetBootSettingsVerb: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "boot-settings",
            abstract: "Replace a node's boot settings, then show the node.",
            discussion: """
                The settings given replace the node's current ones as a whole. An option's value is JSON \
                when it parses as JSON (16, true, "text"), else a string: --option hostname=node-1
                """)
        @OptionGroup var common: Graph.Common
        @Argument(help: "Node id") var node: String
        @Option(help: "Boot profile template, a plain file name (install-debian.ipxe)") var profile: String?
        @Option(name: .customLong("option"), help: "A value the profile is rendered with, key=value (repeatable)") var options: [String] =
            []
        @Flag(help: "Give the node an address but no boot file") var noNetworkBoot = false
        @Flag(help: "Remove the node's boot settings") var clear = false

        func validate() throws {
            if clear, profile != nil || !options.isEmpty || noNetworkBoot {
                throw ValidationError("--clear cannot be combined with --profile, --option or --no-network-boot")
            }
            if !clear, profile == nil, options.isEmpty, !noNetworkBoot {
                throw ValidationError("give --profile, --option or --no-network-boot, or --clear")
            }
            _ = try parsedOptions()
        }

        func parsedOptions() throws -> [String: JSONValue] {
            var parsed: [String: JSONValue] = [:]
            for option in options {
                guard let equals = option.firstIndex(of: "="), equals != option.startIndex else {
                    throw ValidationError("--option takes key=value, not '\(option)'")
                }
                let text = String(option[option.index(after: equals)...])
                parsed[String(option[..<equals])] = (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))) ?? .string(text)
            }
            return parsed
        }

        func run() async throws {
            let options = try parsedOptions()
            let settings = clear ? nil : BootSettings(profile: profile, options: options, networkBoot: noNetworkBoot ? false : nil)
            let request = SetBootSettings(nodeId: node, bootSettings: settings)
            let updated = try await common.withBus { try await $0.call(request) }
            print(common.json ? jsonLine(updated) : describe(updated))
        }
    }
}

/// `rackbus sku define|list`: SKU definitions.
struct SKU: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sku",
        abstract: "Define and list SKUs: named classes of hardware, matched by rules over node catalogs.",
        discussion: "With --json, one JSON object per line. Exit status as for rackbus call: 1 remote error, 3 timeout, 4 no broker.",
        subcommands: [Define.self, List.self])

    struct Define: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Define (or replace) a SKU from a JSON file: {name, rules: [{path, equals|contains|matches}]}.")
        @OptionGroup var common: Graph.Common
        @Argument(help: "JSON file with the definition, or - for standard input") var file: String

        func run() async throws {
            let data = try await readInput(file)
            let definition: SKUDefinition
            do {
                definition = try JSONDecoder().decode(SKUDefinition.self, from: data)
            } catch {
                throw ValidationError("\(file) is not a SKU definition ({name, rules: [{path, equals|contains|matches}]}): \(error)")
            }
            let defined = try await common.withBus { try await $0.call(DefineSKU(definition)) }
            print(common.json ? jsonLine(defined) : "defined \(defined.name) (\(defined.rules.count) rules)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the SKU definitions by name.")
        @OptionGroup var common: Graph.Common

        func run() async throws {
            let skus = try await common.withBus { try await $0.call(ListSKUs()) }
            if common.json {
                for sku in skus { print(jsonLine(sku)) }
                return
            }
            print(
                skus.isEmpty
                    ? "no SKUs"
                    : skus.map { sku in ([sku.name] + sku.rules.map { "  " + describe($0) }).joined(separator: "\n") }.joined(
                        separator: "\n"))
        }
    }
}

/// A value as one line of compact JSON with sorted keys.
private func jsonLine<T: Encodable>(_ value: T) -> String {
    render(Array((try? JSONEncoder().encode(value)) ?? Data()))
}

private func bootSummary(_ settings: BootSettings?) -> String {
    guard let settings else { return "-" }
    return (settings.profile ?? "(local disk)") + (settings.allowsNetworkBoot ? "" : " (no network boot)")
}

/// Left-aligned columns separated by two spaces.
private func table(_ rows: [[String]]) -> String {
    let widths = rows.reduce(into: [Int]()) { widths, row in
        for (index, cell) in row.enumerated() {
            if index < widths.count { widths[index] = max(widths[index], cell.count) } else { widths.append(cell.count) }
        }
    }
    return rows.map { row in
        row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }
        .joined(separator: "  ")
    }
    .joined(separator: "\n")
}

private func describe(_ node: Node) -> String {
    func time(_ milliseconds: Int64) -> String {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000).formatted(.iso8601)
    }
    var lines = [
        "node \(node.id)",
        "  name:    \(node.name)",
        "  type:    \(node.type)",
        "  MACs:    \(node.identifiers.joined(separator: ", "))",
        "  SKU:     \(node.sku ?? "-")",
        "  created: \(time(node.createdAt))",
        "  updated: \(time(node.updatedAt))",
    ]
    if let settings = node.bootSettings {
        lines.append("  boot:    \(bootSummary(settings))")
        for (key, value) in settings.options.sorted(by: { $0.key < $1.key }) {
            lines.append("    \(key) = \(jsonLine(value))")
        }
    } else {
        lines.append("  boot:    -")
    }
    for catalog in node.catalogs {
        lines.append("  catalog \(catalog.source) (\(time(catalog.createdAt))):")
        let pretty = render(Array((try? JSONEncoder().encode(catalog.data)) ?? Data()), pretty: true)
        lines.append(contentsOf: pretty.split(separator: "\n", omittingEmptySubsequences: false).map { "    " + $0 })
    }
    return lines.joined(separator: "\n")
}

private func describe(_ rule: SKURule) -> String {
    if let expected = rule.equals { return "\(rule.path) equals \(jsonLine(expected))" }
    if let part = rule.contains { return "\(rule.path) contains \(jsonLine(part))" }
    if let pattern = rule.matches { return "\(rule.path) matches \(jsonLine(pattern))" }
    return rule.path
}

/// A file's contents, or standard input's for `-`, read on a thread of its own: a blocking read
/// must not hold one of the cooperative pool's threads.
private func readInput(_ path: String) async throws -> Data {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Data, any Error>) in
        Thread {
            if path == "-" {
                continuation.resume(returning: FileHandle.standardInput.readDataToEndOfFile())
            } else if let data = FileManager.default.contents(atPath: path) {
                continuation.resume(returning: data)
            } else {
                continuation.resume(throwing: ValidationError("cannot read \(path)"))
            }
        }.start()
    }
}
