import BusCore
import Foundation
import NodeProtocol
import Testing

@testable import HTTPService

@Suite("Templates (pure rendering; overrides read from a folder)")
struct TemplateTests {
    let configuration = HTTPConfiguration(bootURL: "http://172.31.128.1:9080")
    let library = TemplateLibrary(directory: nil)

    func values(options: [String: JSONValue] = [:], node: Node? = nil) -> TemplateValues {
        TemplateValues(configuration: configuration, nodeId: "525400123456", macs: ["52:54:00:12:34:56"], options: options, node: node)
    }

    @Test("Every built-in parses, and every iPXE one starts with #!ipxe", arguments: BuiltInTemplates.all.keys.sorted())
    func builtInsParse(name: String) async throws {
        let text = try await library.render(name, values: values())
        if name.hasSuffix(".ipxe") { #expect(text.hasPrefix("#!ipxe\n"), "\(text)") }
    }

    @Test("boot-local.ipxe prints the line the VM test waits for, then boots the first disk")
    func bootLocal() async throws {
        let lines = try await library.render("boot-local.ipxe", values: values()).split(separator: "\n")
        #expect(lines.contains("RackBus: node 525400123456 boots from its local disk".echoed))
        #expect(lines.contains("sanboot --no-describe --drive 0x80 || exit"))
    }

    @Test("discovery.ipxe reports to the smbios route with iPXE's settings as a query string")
    func discovery() async throws {
        let text = try await library.render("discovery.ipxe", values: values())
        #expect(text.contains("echo RackBus: discovering node 525400123456"))
        #expect(
            text.contains(
                "chain http://172.31.128.1:9080/api/current/catalogs/smbios?macs=${net0/mac:hexhyp}&manufacturer=${manufacturer:uristring}&product=${product:uristring}&serial=${serial:uristring}&uuid=${uuid}&asset=${asset:uristring}&platform=${platform:uristring} || goto retry"
            ))
        #expect(text.contains("goto report"))
    }

    @Test("wait.ipxe sleeps 3 s and chains the profiles URL again")
    func wait() async throws {
        let text = try await library.render("wait.ipxe", values: values())
        #expect(text.contains("sleep 3\nchain http://172.31.128.1:9080/api/current/profiles?macs=52:54:00:12:34:56 || exit 1"))
        let withIPs = TemplateValues(
            configuration: configuration, nodeId: "n", macs: ["52:54:00:12:34:56", "52:54:00:12:34:57"], ips: ["10.0.0.5"], options: [:],
            node: nil)
        #expect(
            try await library.render("wait.ipxe", values: withIPs).contains(
                "chain http://172.31.128.1:9080/api/current/profiles?macs=52:54:00:12:34:56,52:54:00:12:34:57&ips=10.0.0.5 || exit 1"))
    }

    @Test("ignore.ipxe says so and exits to the next boot device")
    func ignore() async throws {
        let text = try await library.render("ignore.ipxe", values: values())
        #expect(text.contains("does not provision this machine"))
        #expect(text.hasSuffix("exit\n"))
    }

    @Test("Values are text: nothing is HTML-escaped; whole numbers have no fraction; missing options take the defaults")
    func textRendering() async throws {
        let node = Node(id: "525400123456", identifiers: ["52:54:00:12:34:56"], name: "rack<1>&b", createdAt: 0, updatedAt: 0)
        let text = try await library.render(
            "preseed.cfg", values: values(options: ["hostname": "web&1", "rootPasswordHash": "$6$x<y"], node: node))
        #expect(text.contains("# RackBus preseed for node 525400123456 (rack<1>&b)"))
        #expect(text.contains("d-i netcfg/get_hostname string web&1"))
        #expect(text.contains("d-i passwd/root-password-crypted password $6$x<y"))
        #expect(text.contains("d-i mirror/http/hostname string deb.debian.org"))
        let object = values(options: ["duration": 10000, "ratio": 0.5, "gone": .null]).mustacheObject
        let options = try #require(object["options"] as? [String: Any])
        #expect(options["duration"] as? Int == 10000)
        #expect(options["ratio"] as? Double == 0.5)
        #expect(options["gone"] == nil)
    }

    @Test("A template name is a plain file name", arguments: ["", ".hidden", "../x", "a/b", "a\\b", "a\u{0}b", "x\ny"])
    func invalidNames(name: String) async {
        #expect(!TemplateLibrary.isValidName(name))
        await #expect(throws: TemplateError.invalidName(name)) { try await library.render(name, values: values()) }
    }

    @Test("An unknown template is not found")
    func unknown() async {
        await #expect(throws: TemplateError.notFound("nope.ipxe")) { try await library.render("nope.ipxe", values: values()) }
    }

    @Test("A folder's files replace built-ins of the same name and add new ones")
    func overrides() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-templates-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "#!ipxe\necho custom local boot for {{nodeId}}\n".write(
            to: directory.appendingPathComponent("boot-local.ipxe"), atomically: true, encoding: .utf8)
        try "hostname={{options.hostname}}\n".write(to: directory.appendingPathComponent("user-data"), atomically: true, encoding: .utf8)
        try "{{#broken}}\n".write(to: directory.appendingPathComponent("broken.ipxe"), atomically: true, encoding: .utf8)
        let library = TemplateLibrary(directory: directory.path)
        #expect(try await library.render("boot-local.ipxe", values: values()) == "#!ipxe\necho custom local boot for 525400123456\n")
        #expect(try await library.render("user-data", values: values(options: ["hostname": "h1"])) == "hostname=h1\n")
        #expect(try await library.render("wait.ipxe", values: values()).contains("sleep 3"), "built-ins not overridden stay")
        await #expect {
            try await library.render("broken.ipxe", values: values())
        } throws: { error in
            if case .unreadable = error as? TemplateError { return true }
            return false
        }
    }
}

extension String {
    fileprivate var echoed: Substring { Substring("echo " + self) }
}
