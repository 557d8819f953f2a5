import BusCore
import NodeProtocol
import Testing

@testable import NodeRegistry

let sampleCatalogs = [
    Catalog(
        source: "dmi",
        data: [
            "Base Board Information": ["Manufacturer": "Intel Corporation", "Product Name": "S2600KP"],
            "System Information": ["Manufacturer": "Quanta", "Product Name": "D51B-2U"],
        ], createdAt: 1),
    Catalog(
        source: "ohai",
        data: [
            "cpu": ["total": 32, "real": 2, "0": ["model_name": "Intel(R) Xeon(R) CPU E5-2650 v3 @ 2.30GHz"]],
            "memory": ["total": "264030140kB"],
            "disks": [["size": 480, "ssd": true], ["size": 4000, "ssd": false]],
            "kernel.version": "5.10.0",
            "nothing": nil,
        ], createdAt: 2),
]

@Suite("SKU matcher: catalog paths and rules, pure")
struct SKUMatcherTests {
    @Test("a path walks objects by key and arrays by index, starting at the catalog source")
    func paths() {
        #expect(SKUMatcher.value(at: "ohai.cpu.total", in: sampleCatalogs) == 32)
        #expect(SKUMatcher.value(at: "ohai.disks.1.size", in: sampleCatalogs) == 4000)
        #expect(SKUMatcher.value(at: "ohai.disks.0.ssd", in: sampleCatalogs) == true)
        #expect(SKUMatcher.value(at: "ohai.cpu.0.model_name", in: sampleCatalogs)?.stringValue?.hasPrefix("Intel") == true)
        #expect(SKUMatcher.value(at: "ohai.disks.2.size", in: sampleCatalogs) == nil, "past the end of the array")
        #expect(SKUMatcher.value(at: "ohai.disks.x.size", in: sampleCatalogs) == nil, "not an index")
        #expect(SKUMatcher.value(at: "ohai.disks.-1.size", in: sampleCatalogs) == nil)
        #expect(SKUMatcher.value(at: "ohai.cpu.total.more", in: sampleCatalogs) == nil, "through a number")
        #expect(SKUMatcher.value(at: "smbios.anything", in: sampleCatalogs) == nil, "no such source")
        #expect(SKUMatcher.value(at: "ohai.memory", in: sampleCatalogs) == ["total": "264030140kB"])
    }

    @Test("keys with spaces (RackHD's dmi form) and keys with dots resolve")
    func spacesAndDots() {
        #expect(SKUMatcher.value(at: "dmi.Base Board Information.Manufacturer", in: sampleCatalogs) == "Intel Corporation")
        #expect(SKUMatcher.value(at: "dmi.System Information.Product Name", in: sampleCatalogs) == "D51B-2U")
        #expect(SKUMatcher.value(at: "ohai.kernel.version", in: sampleCatalogs) == "5.10.0")
    }

    @Test("equals compares JSON values: a number never equals a numeric string")
    func equals() {
        #expect(SKUMatcher.matches(SKURule(path: "ohai.cpu.total", equals: 32), catalogs: sampleCatalogs))
        #expect(!SKUMatcher.matches(SKURule(path: "ohai.cpu.total", equals: "32"), catalogs: sampleCatalogs))
        #expect(!SKUMatcher.matches(SKURule(path: "ohai.cpu.total", equals: 31), catalogs: sampleCatalogs))
        #expect(SKUMatcher.matches(SKURule(path: "ohai.disks.0.ssd", equals: true), catalogs: sampleCatalogs))
        #expect(!SKUMatcher.matches(SKURule(path: "ohai.disks.0.ssd", equals: "true"), catalogs: sampleCatalogs))
        #expect(SKUMatcher.matches(SKURule(path: "ohai.memory", equals: ["total": "264030140kB"]), catalogs: sampleCatalogs))
        #expect(!SKUMatcher.matches(SKURule(path: "ohai.missing", equals: "x"), catalogs: sampleCatalogs), "a missing path")
    }

    @Test("contains tests the value as text: strings as themselves, numbers and booleans as JSON text")
    func contains() {
        #expect(SKUMatcher.matches(SKURule(path: "dmi.Base Board Information.Manufacturer", contains: "Intel"), catalogs: sampleCatalogs))
        #expect(!SKUMatcher.matches(SKURule(path: "dmi.Base Board Information.Manufacturer", contains: "intel"), catalogs: sampleCatalogs))
        #expect(SKUMatcher.matches(SKURule(path: "ohai.disks.1.size", contains: "400"), catalogs: sampleCatalogs))
        #expect(!SKUMatcher.matches(SKURule(path: "ohai.disks.1.size", contains: ".0"), catalogs: sampleCatalogs), "4000, not 4000.0")
        #expect(SKUMatcher.matches(SKURule(path: "ohai.disks.1.ssd", contains: "fal"), catalogs: sampleCatalogs))
        #expect(!SKUMatcher.matches(SKURule(path: "ohai.memory", contains: "total"), catalogs: sampleCatalogs), "objects have no text")
        #expect(!SKUMatcher.matches(SKURule(path: "ohai.nothing", contains: "null"), catalogs: sampleCatalogs), "null has no text")
        #expect(SKUMatcher.text(of: 2.5) == "2.5")
        #expect(SKUMatcher.text(of: -7) == "-7")
    }

    @Test("matches searches the text with a regular expression; a bad pattern never matches")
    func matches() {
        #expect(SKUMatcher.matches(SKURule(path: "ohai.cpu.0.model_name", matches: "E5-26[0-9]0 v3"), catalogs: sampleCatalogs))
        #expect(!SKUMatcher.matches(SKURule(path: "ohai.cpu.0.model_name", matches: "^Xeon"), catalogs: sampleCatalogs))
        #expect(SKUMatcher.matches(SKURule(path: "ohai.cpu.total", matches: "^3[0-9]$"), catalogs: sampleCatalogs))
        #expect(!SKUMatcher.matches(SKURule(path: "ohai.cpu.0.model_name", matches: "(unclosed"), catalogs: sampleCatalogs))
        #expect(!SKUMatcher.matches(SKURule(path: "ohai.cpu.0.model_name", matches: "[z-a]"), catalogs: sampleCatalogs))
    }

    @Test("a rule with no test never matches, nor does a SKU without rules")
    func emptyRules() {
        #expect(!SKUMatcher.matches(SKURule(path: "ohai.cpu.total"), catalogs: sampleCatalogs))
        #expect(!SKUMatcher.matches(SKUDefinition(name: "anything", rules: []), catalogs: sampleCatalogs))
        #expect(SKUMatcher.bestMatch([SKUDefinition(name: "anything", rules: [])], catalogs: sampleCatalogs) == nil)
    }

    @Test("a SKU matches when all its rules do; the one with the most rules wins, ties by name")
    func mostSpecificWins() {
        let intel = SKUDefinition(name: "intel", rules: [SKURule(path: "dmi.Base Board Information.Manufacturer", contains: "Intel")])
        let quanta = SKUDefinition(
            name: "quanta-d51b",
            rules: [
                SKURule(path: "dmi.System Information.Manufacturer", equals: "Quanta"),
                SKURule(path: "dmi.System Information.Product Name", matches: "^D51B"),
            ])
        let quantaBig = SKUDefinition(
            name: "quanta-d51b-32core", rules: quanta.rules + [SKURule(path: "ohai.cpu.total", equals: 32)])
        let quantaSmall = SKUDefinition(
            name: "quanta-d51b-16core", rules: quanta.rules + [SKURule(path: "ohai.cpu.total", equals: 16)])
        #expect(SKUMatcher.bestMatch([intel], catalogs: sampleCatalogs)?.name == "intel")
        #expect(SKUMatcher.bestMatch([intel, quanta], catalogs: sampleCatalogs)?.name == "quanta-d51b")
        #expect(SKUMatcher.bestMatch([quantaSmall, intel, quantaBig, quanta], catalogs: sampleCatalogs)?.name == "quanta-d51b-32core")
        #expect(!SKUMatcher.matches(quantaSmall, catalogs: sampleCatalogs), "one failing rule fails the SKU")

        let alsoIntel = SKUDefinition(name: "a-intel", rules: intel.rules)
        #expect(SKUMatcher.bestMatch([intel, alsoIntel], catalogs: sampleCatalogs)?.name == "a-intel")
        #expect(SKUMatcher.bestMatch([alsoIntel, intel], catalogs: sampleCatalogs)?.name == "a-intel")
        #expect(SKUMatcher.bestMatch([quantaSmall], catalogs: sampleCatalogs) == nil)
        #expect(SKUMatcher.bestMatch([intel], catalogs: []) == nil, "no catalogs")
    }
}
