import BusCore
import BusTestSupport
import Foundation
import NodeProtocol
import Testing

extension NodeRegistryBrokerTests {
    @Suite("rackbus nodes and rackbus sku, against a registry in the test process")
    struct CLI {
        /// Runs the `rackbus` binary against this test's exchanges; throws (with the output and the
        /// exit status) when it exits non-zero.
        static func rackbus(_ arguments: [String], prefix: String, input: String? = nil) async throws -> String {
            try await TestBroker.run(
                ServiceProcess.executable.path, arguments + ["--url", TestBroker.url, "--prefix", prefix], input: input)
        }

        static func decodeLines<T: Decodable>(_ output: String, as type: T.Type) throws -> [T] {
            try output.split(separator: "\n").map { try JSONDecoder().decode(T.self, from: Data($0.utf8)) }
        }

        @Test("sku define from a file and from stdin, sku list, nodes show/list and boot-settings with --json")
        func definesListsAndShows() async throws {
            let configuration = try TestBroker.configuration()
            let prefix = configuration.exchangePrefix
            try await TestBroker.withBus(configuration) { bus in
                try await withRegistry(on: bus) { _ in
                    let node = try await bus.call(RegisterNode(macs: ["52:54:00:aa:0a:01"], name: "cli-node")).node
                    _ = try await bus.call(
                        AddCatalog(nodeId: node.id, source: "dmi", data: ["Base Board Information": ["Manufacturer": "Intel Corporation"]]))

                    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-sku-\(UUID().uuidString)")
                    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                    defer { try? FileManager.default.removeItem(at: directory) }
                    let file = directory.appendingPathComponent("intel.json")
                    try Data(
                        #"{"name": "intel-board", "rules": [{"path": "dmi.Base Board Information.Manufacturer", "contains": "Intel"}]}"#
                            .utf8
                    ).write(to: file)
                    let intel = SKUDefinition(
                        name: "intel-board", rules: [SKURule(path: "dmi.Base Board Information.Manufacturer", contains: "Intel")])

                    let defined = try await Self.rackbus(["sku", "define", file.path, "--json"], prefix: prefix)
                    #expect(try Self.decodeLines(defined, as: SKUDefinition.self) == [intel], "\(defined)")
                    let fromStandardInput = try await Self.rackbus(
                        ["sku", "define", "-"], prefix: prefix, input: #"{"name": "any", "rules": [{"path": "dmi", "matches": "."}]}"#)
                    #expect(fromStandardInput.contains("defined any (1 rules)"), "\(fromStandardInput)")

                    let listed = try await Self.rackbus(["sku", "list", "--json"], prefix: prefix)
                    #expect(try Self.decodeLines(listed, as: SKUDefinition.self).map(\.name) == ["any", "intel-board"], "\(listed)")
                    #expect(try await bus.call(ListSKUs()).contains(intel))

                    _ = try await bus.call(AssignSKU(nodeId: node.id))
                    let shown = try await Self.rackbus(["nodes", "show", "52-54-00-AA-0A-01", "--json"], prefix: prefix)
                    let shownNodes = try Self.decodeLines(shown, as: Node.self)
                    let stored = try await bus.call(GetNode(node.id))
                    #expect(shownNodes == [stored], "\(shown)")
                    #expect(shownNodes.first?.sku == "intel-board")

                    let table = try await Self.rackbus(["nodes", "list"], prefix: prefix)
                    #expect(table.contains("525400aa0a01") && table.contains("cli-node") && table.contains("intel-board"), "\(table)")

                    let booted = try await Self.rackbus(
                        [
                            "nodes", "boot-settings", node.id, "--profile", "install-debian.ipxe", "--option", "hostname=n10", "--option",
                            "disks=2", "--no-network-boot", "--json",
                        ], prefix: prefix)
                    let expected = BootSettings(
                        profile: "install-debian.ipxe", options: ["hostname": "n10", "disks": 2], networkBoot: false)
                    #expect(try Self.decodeLines(booted, as: Node.self).first?.bootSettings == expected, "\(booted)")
                    let cleared = try await Self.rackbus(["nodes", "boot-settings", node.id, "--clear", "--json"], prefix: prefix)
                    #expect(try Self.decodeLines(cleared, as: Node.self).first?.bootSettings == nil, "\(cleared)")
                }
            }
        }

        @Test("a remote error exits 1 with the error printed, a bad argument 64")
        func exitStatuses() async throws {
            let configuration = try TestBroker.configuration()
            let prefix = configuration.exchangePrefix
            try await TestBroker.withBus(configuration) { bus in
                try await withRegistry(on: bus) { _ in
                    let unknown = await #expect(throws: TestFailure.self) {
                        _ = try await Self.rackbus(["nodes", "show", "525400ffffff"], prefix: prefix)
                    }
                    #expect(unknown?.description.contains("exited 1") == true, "\(unknown?.description ?? "")")
                    #expect(
                        unknown?.description.contains("error: NotFoundError: No node '525400ffffff'. (status 404)") == true,
                        "\(unknown?.description ?? "")")
                    let badSKU = await #expect(throws: TestFailure.self) {
                        _ = try await Self.rackbus(["sku", "define", "-"], prefix: prefix, input: #"{"name": "x", "rules": []}"#)
                    }
                    #expect(badSKU?.description.contains("exited 1") == true, "\(badSKU?.description ?? "")")
                    #expect(badSKU?.description.contains("(status 400)") == true, "\(badSKU?.description ?? "")")
                    let noSettings = await #expect(throws: TestFailure.self) {
                        _ = try await Self.rackbus(["nodes", "boot-settings", "525400aa0a01"], prefix: prefix)
                    }
                    #expect(noSettings?.description.contains("exited 64") == true, "\(noSettings?.description ?? "")")
                    let notJSON = await #expect(throws: TestFailure.self) {
                        _ = try await Self.rackbus(["sku", "define", "-"], prefix: prefix, input: "not json")
                    }
                    #expect(notJSON?.description.contains("exited 64") == true, "\(notJSON?.description ?? "")")
                }
            }
        }
    }
}
