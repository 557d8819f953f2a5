import BusCore
import NodeProtocol
import Testing

@testable import NodeRegistry

@Suite("Node registry input validation, pure")
struct NodeValidationTests {
    @Test("MACs are normalized in order without repeats; none, or any invalid one, is a 400")
    func macs() throws {
        #expect(
            try NodeValidation.normalizedMACs(["52-54-00-AA-BB-01", "525400aabb02", "52:54:00:aa:bb:01"])
                == ["52:54:00:aa:bb:01", "52:54:00:aa:bb:02"])
        let none = #expect(throws: ErrorEvent.self) { try NodeValidation.normalizedMACs([]) }
        #expect(none?.status == 400)
        let bad = #expect(throws: ErrorEvent.self) { try NodeValidation.normalizedMACs(["52:54:00:aa:bb:01", "52:54:00:aa:bb"]) }
        #expect(bad?.status == 400)
        #expect(bad?.message.contains("'52:54:00:aa:bb'") == true)
    }

    @Test("a boot profile must be a plain file name")
    func profiles() throws {
        try NodeValidation.validate(BootSettings(profile: "install-debian.ipxe", options: ["a": 1]))
        try NodeValidation.validate(BootSettings(profile: nil, networkBoot: false))
        try NodeValidation.validate(nil)
        for bad in ["", "../secret", "a/b.ipxe", "/etc/passwd", "..", "x..y", "a\\b", "a\nb"] {
            let error = #expect(throws: ErrorEvent.self, "\(bad)") { try NodeValidation.validate(BootSettings(profile: bad)) }
            #expect(error?.status == 400)
        }
    }

    @Test("a catalog source is one word of [A-Za-z0-9_.-]")
    func sources() throws {
        for good in ["smbios", "dmi", "ohai", "lsh_w.v2-x"] { try NodeValidation.validateCatalogSource(good) }
        for bad in ["", "two words", "a/b", "dmi*", "é"] {
            let error = #expect(throws: ErrorEvent.self, "\(bad)") { try NodeValidation.validateCatalogSource(bad) }
            #expect(error?.status == 400)
        }
    }

    @Test("a SKU needs a name, rules, and per rule a path and exactly one compiling test; the 400 names the problem")
    func skus() throws {
        try NodeValidation.validate(
            SKUDefinition(
                name: "ok",
                rules: [SKURule(path: "a.b", equals: 1), SKURule(path: "a.c", contains: "x"), SKURule(path: "a.d", matches: "^x+$")]))
        let cases: [(SKUDefinition, String)] = [
            (SKUDefinition(name: " ", rules: [SKURule(path: "a", equals: 1)]), "name is empty"),
            (SKUDefinition(name: "s", rules: []), "at least one rule"),
            (SKUDefinition(name: "s", rules: [SKURule(path: "a", equals: 1), SKURule(path: "", equals: 1)]), "rule 2 has no path"),
            (SKUDefinition(name: "s", rules: [SKURule(path: "a")]), "exactly one of equals, contains and matches, not 0"),
            (SKUDefinition(name: "s", rules: [SKURule(path: "a", equals: 1, contains: "1")]), "not 2"),
            (SKUDefinition(name: "s", rules: [SKURule(path: "a.b", matches: "(open")]), "'(open' is not a regular expression"),
        ]
        for (definition, problem) in cases {
            let error = #expect(throws: ErrorEvent.self, "\(problem)") { try NodeValidation.validate(definition) }
            #expect(error?.status == 400)
            #expect(error?.message.contains(problem) == true, "\(error?.message ?? "") should say \(problem)")
        }
    }

    @Test("the database path comes from RACKBUS_NODES_DATABASE, else the default")
    func configuration() {
        #expect(NodeRegistryConfiguration.fromEnvironment([:]).databasePath == ".rackbus/nodes.sqlite")
        #expect(NodeRegistryConfiguration.fromEnvironment(["RACKBUS_NODES_DATABASE": ""]).databasePath == ".rackbus/nodes.sqlite")
        #expect(NodeRegistryConfiguration.fromEnvironment(["RACKBUS_NODES_DATABASE": ":memory:"]).databasePath == ":memory:")
    }
}
