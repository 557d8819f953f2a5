import BusCore
import BusTestSupport
import Foundation
import HTTPService
import Hummingbird
import HummingbirdTesting
import NodeProtocol
import TaskGraphRunner
import Testing

/// Every test here runs a real HTTPService on 127.0.0.1 against the real broker, most with the
/// real node registry and some with the workflow services. RPC servers with fixed queue names
/// must not run side by side in this target, so everything under this suite runs one at a time.
@Suite("HTTPService on a real broker", .serialized, .timeLimit(.minutes(3)))
struct HTTPServiceBrokerTests {
    @Suite("Profiles")
    struct Profiles {
        @Test("An unknown MAC is registered and discovered; after the graph, boot-local; with boot settings, their profile")
        func discoveryThenLocalThenBootSettings() async throws {
            try await TestBroker.withBus { bus in
                try await withRegistry(bus: bus) {
                    try await withWorkflowServices(bus: bus) {
                        let graphName = "Graph.Test.Discovery.\(UUID().uuidString.prefix(8))"
                        let discovery = GraphDefinition(
                            friendlyName: "Test discovery", injectableName: graphName,
                            tasks: [
                                GraphTask(
                                    label: "discover", taskName: "Task.Wait",
                                    optionOverrides: ["duration": 10000, "profile": "discovery.ipxe", "completionUri": "catalogs/smbios"])
                            ])
                        _ = try await bus.call(DefineTaskGraph(definition: discovery))
                        let mac = uniqueMAC()
                        let id = nodeId(of: mac)
                        let discovered = try await bus.subscribe(
                            to: .events, patterns: ["node.discovered.\(id)"], as: NodeLifecycleEvent.self)
                        try await withHTTPService(bus: bus, testConfiguration(discoveryGraph: graphName)) { http in
                            let first = try await http.boot("/api/current/profiles?macs=\(uriEncoded(mac))")
                            #expect(first.status == .ok)
                            #expect(first.headers[.contentType]?.hasPrefix("text/plain") == true)
                            #expect(first.text.hasPrefix("#!ipxe"))
                            #expect(first.text.contains("echo RackBus: discovering node \(id)"), "\(first.text)")
                            #expect(
                                first.text.contains("chain http://10.9.8.7:9080/api/current/catalogs/smbios?macs=${net0/mac:hexhyp}"))
                            let announced = try await collect(discovered, count: 1)[0].message
                            #expect(announced.nodeId == id)
                            #expect(announced.data.identifiers == [mac])
                            let active = try #require(try await bus.call(GetActiveTaskGraph(filter: GraphFilter(target: id))))
                            #expect(active.name == graphName)

                            // Asked again while the task runs: the same profile (the node is known now).
                            let again = try await http.boot("/api/2.0/profiles?macs=\(uriEncoded(mac))")
                            #expect(again.text.contains("echo RackBus: discovering node \(id)"))

                            // The graph is cancelled: no graph, no boot settings, so the local disk.
                            _ = try await bus.call(CancelTaskGraph(filter: GraphFilter(target: id)))
                            try await eventually {
                                try await bus.call(GetActiveTaskGraph(filter: GraphFilter(target: id))) == nil
                            }
                            let local = try await http.boot("/api/current/profiles?macs=\(uriEncoded(mac))")
                            #expect(local.status == .ok)
                            #expect(local.text.contains("RackBus: node \(id) boots from its local disk"), "\(local.text)")

                            // Boot settings give the profile and the options it is rendered with.
                            _ = try await bus.call(
                                SetBootSettings(
                                    nodeId: id, bootSettings: BootSettings(profile: "install-debian.ipxe", options: ["hostname": "web7"])))
                            let install = try await http.boot("/api/current/profiles?macs=\(uriEncoded(mac))&ips=10.1.1.5")
                            #expect(install.status == .ok)
                            #expect(install.text.contains("echo RackBus: installing Debian on node \(id)"), "\(install.text)")
                            #expect(install.text.contains("hostname=web7"))
                            #expect(install.text.contains("url=http://10.9.8.7:9080/api/current/templates/preseed.cfg?nodeId=\(id)"))
                        }
                    }
                }
            }
        }

        @Test("A known node with an active graph whose task has no profile waits")
        func activeGraphWithoutProfile() async throws {
            try await TestBroker.withBus { bus in
                try await withRegistry(bus: bus) {
                    try await withWorkflowServices(bus: bus) {
                        let mac = uniqueMAC()
                        let node = try await bus.call(RegisterNode(macs: [mac])).node
                        let graphName = "Graph.Test.Wait.\(UUID().uuidString.prefix(8))"
                        _ = try await bus.call(
                            DefineTaskGraph(
                                definition: GraphDefinition(
                                    friendlyName: "Wait", injectableName: graphName,
                                    tasks: [GraphTask(label: "wait", taskName: "Task.Wait", optionOverrides: ["duration": 10000])])))
                        _ = try await bus.call(RunTaskGraph(name: graphName, target: node.id))
                        try await withHTTPService(bus: bus, testConfiguration()) { http in
                            let response = try await http.boot("/api/current/profiles?macs=\(mac)")
                            #expect(response.status == .ok)
                            #expect(response.text.contains("sleep 3"))
                            #expect(
                                response.text.contains("chain http://10.9.8.7:9080/api/current/profiles?macs=\(mac) || exit 1"),
                                "\(response.text)")
                        }
                        _ = try await bus.call(CancelTaskGraph(filter: GraphFilter(target: node.id)))
                    }
                }
            }
        }

        @Test("Unknown MACs under the ignore and boot-local policies are not registered")
        func unknownNodePolicies() async throws {
            try await TestBroker.withBus { bus in
                try await withRegistry(bus: bus) {
                    let mac = uniqueMAC()
                    try await withHTTPService(bus: bus, testConfiguration(unknownNodes: .ignore)) { http in
                        let response = try await http.boot("/api/current/profiles?macs=\(uriEncoded(mac))")
                        #expect(response.status == .ok)
                        #expect(response.text.hasPrefix("#!ipxe"))
                        #expect(response.text.contains("RackBus does not provision this machine (\(mac))"))
                        #expect(response.text.hasSuffix("exit\n"))
                    }
                    try await withHTTPService(bus: bus, testConfiguration(unknownNodes: .bootLocal)) { http in
                        let response = try await http.boot("/api/current/profiles?macs=\(uriEncoded(mac))")
                        #expect(response.status == .ok)
                        #expect(response.text.contains("RackBus: node \(nodeId(of: mac)) boots from its local disk"))
                    }
                    await #expect(throws: BusError.self) { try await bus.call(GetNode(mac)) }
                }
            }
        }

        @Test("Without a registry the boot routes answer 503 with a reason, and keep serving")
        func registryDown() async throws {
            try await TestBroker.withBus { bus in
                var configuration = testConfiguration()
                configuration.serviceCallTimeout = .milliseconds(500)
                try await withHTTPService(bus: bus, configuration) { http in
                    for _ in 0..<2 {
                        let response = try await http.boot("/api/current/profiles?macs=\(uniqueMAC())")
                        #expect(response.status == .serviceUnavailable)
                        #expect(response.text.contains("the node registry did not answer"))
                    }
                }
            }
        }
    }

    @Suite("The discovery report and templates")
    struct ReportAndTemplates {
        @Test("The smbios report stores the catalog and is announced with status 200")
        func smbiosReport() async throws {
            try await TestBroker.withBus { bus in
                try await withRegistry(bus: bus) {
                    let mac = uniqueMAC()
                    let node = try await bus.call(RegisterNode(macs: [mac])).node
                    let events = try await bus.subscribe(to: .events, patterns: ["http.response.\(node.id)"], as: HTTPResponseEvent.self)
                    try await withHTTPService(bus: bus, testConfiguration()) { http in
                        let response = try await http.boot(
                            "/api/current/catalogs/smbios?macs=\(uriEncoded(mac))&manufacturer=QEMU&product=Standard%20PC%20%28Q35%29&serial=&uuid=1234-abcd&asset=&platform=x86_64"
                        )
                        #expect(response.status == .ok)
                        #expect(response.text.hasPrefix("#!ipxe"))
                        #expect(
                            response.text.contains("sleep 1\nchain http://10.9.8.7:9080/api/current/profiles?macs=\(mac) || exit 1"),
                            "\(response.text)")
                        let stored = try #require(try await bus.call(GetNode(node.id)).catalog("smbios"))
                        #expect(
                            stored.data
                                == [
                                    "macs": [.string(mac)], "manufacturer": "QEMU", "product": "Standard PC (Q35)", "uuid": "1234-abcd",
                                    "platform": "x86_64",
                                ])
                        let event = try await collect(events, count: 1)[0].message
                        #expect(event.statusCode == 200)
                        #expect(event.url.contains("catalogs/smbios"))
                        #expect(event.method == "GET")
                        #expect(event.address == "127.0.0.1")

                        let unknown = try await http.boot("/api/current/catalogs/smbios?macs=\(uniqueMAC())&manufacturer=x")
                        #expect(unknown.status == .notFound)
                        let noMAC = try await http.boot("/api/current/catalogs/smbios?manufacturer=x")
                        #expect(noMAC.status == .badRequest)
                    }
                }
            }
        }

        @Test("Templates render with the node and its options; 400 without a node, 404 for an unknown one or name")
        func templates() async throws {
            try await TestBroker.withBus { bus in
                try await withRegistry(bus: bus) {
                    let mac = uniqueMAC()
                    let node = try await bus.call(RegisterNode(macs: [mac], name: "rack-4")).node
                    _ = try await bus.call(
                        SetBootSettings(
                            nodeId: node.id, bootSettings: BootSettings(profile: "install-debian.ipxe", options: ["hostname": "db4"])))
                    try await withHTTPService(bus: bus, testConfiguration()) { http in
                        let byId = try await http.boot("/api/current/templates/preseed.cfg?nodeId=\(node.id)")
                        #expect(byId.status == .ok)
                        #expect(byId.text.contains("# RackBus preseed for node \(node.id) (rack-4)"), "\(byId.text)")
                        #expect(byId.text.contains("d-i netcfg/get_hostname string db4"))
                        let byMAC = try await http.boot("/api/current/templates/preseed.cfg?macs=\(uriEncoded(mac))")
                        #expect(byMAC.text == byId.text)
                        #expect(try await http.boot("/api/current/templates/preseed.cfg").status == .badRequest)
                        #expect(try await http.boot("/api/current/templates/preseed.cfg?nodeId=nobody").status == .notFound)
                        #expect(try await http.boot("/api/current/templates/nope.cfg?nodeId=\(node.id)").status == .notFound)
                        #expect(try await http.boot("/api/current/templates/..%2FPackage.swift?nodeId=\(node.id)").status == .badRequest)
                    }
                }
            }
        }
    }

    @Suite("http.response events")
    struct ResponseEvents {
        @Test("Every boot request is announced under its node: by MAC, by nodeId, else external; and on on.http")
        func everyRequestIsAnnounced() async throws {
            try await TestBroker.withBus { bus in
                try await withRegistry(bus: bus) {
                    try await withWorkflowServices(bus: bus) {
                        let mac = uniqueMAC()
                        let node = try await bus.call(RegisterNode(macs: [mac])).node
                        let events = try await bus.subscribe(to: .events, patterns: ["http.response.*"], as: HTTPResponseEvent.self)
                        let copies = try await bus.subscribe(to: .http, patterns: ["http.response"], as: HTTPResponseEvent.self)
                        try await withHTTPService(bus: bus, testConfiguration()) { http in
                            let byMAC = "/api/current/profiles?macs=\(uriEncoded(mac))"
                            #expect(try await http.boot(byMAC).status == .ok)
                            let byMACEvent = try await collect(events, count: 1)[0]
                            #expect(byMACEvent.routingKey == "http.response.\(node.id)")
                            #expect(byMACEvent.message.url == byMAC)
                            #expect(byMACEvent.message.method == "GET")
                            #expect(byMACEvent.message.statusCode == 200)
                            #expect(byMACEvent.message.address == "127.0.0.1")
                            #expect(byMACEvent.message.time >= 0)

                            #expect(try await http.boot("/api/current/templates/nope?nodeId=\(node.id)").status == .notFound)
                            let byId = try await collect(events, count: 1)[0]
                            #expect(byId.routingKey == "http.response.\(node.id)")
                            #expect(byId.message.statusCode == 404)

                            // 127.0.0.1 has no DHCP lease: the request is nobody's.
                            #expect(try await http.boot("/common/missing.iso").status == .notFound)
                            let external = try await collect(events, count: 1)[0]
                            #expect(external.routingKey == "http.response.external")
                            #expect(external.message.url == "/common/missing.iso")
                            #expect(external.message.statusCode == 404)

                            let onHTTP = try await collect(copies, count: 3).map(\.message.url)
                            #expect(Set(onHTTP) == [byMAC, "/api/current/templates/nope?nodeId=\(node.id)", "/common/missing.iso"])
                        }
                    }
                }
            }
        }
    }

    @Suite("Static files under /common")
    struct StaticFiles {
        static func makeRoot() throws -> (root: URL, outside: URL) {
            let base = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-static-\(UUID().uuidString)")
            let root = base.appendingPathComponent("static")
            try FileManager.default.createDirectory(at: root.appendingPathComponent("debian"), withIntermediateDirectories: true)
            try Data((0..<200_000).map { UInt8($0 % 251) }).write(to: root.appendingPathComponent("debian/initrd.gz"))
            try "kernel".write(to: root.appendingPathComponent("debian/linux"), atomically: true, encoding: .utf8)
            let outside = base.appendingPathComponent("secret.txt")
            try "secret".write(to: outside, atomically: true, encoding: .utf8)
            try FileManager.default.createSymbolicLink(at: root.appendingPathComponent("leak.txt"), withDestinationURL: outside)
            try FileManager.default.createSymbolicLink(at: root.appendingPathComponent("up"), withDestinationURL: base)
            try FileManager.default.createSymbolicLink(
                at: root.appendingPathComponent("kernel"), withDestinationURL: root.appendingPathComponent("debian/linux"))
            return (root, outside)
        }

        @Test("Whole files and byte ranges are served; traversal and links out of the root are refused")
        func files() async throws {
            let (root, _) = try Self.makeRoot()
            defer { try? FileManager.default.removeItem(at: root.deletingLastPathComponent()) }
            try await TestBroker.withBus { bus in
                try await withHTTPService(bus: bus, testConfiguration(staticRoot: root.path)) { http in
                    let whole = try await http.boot("/common/debian/initrd.gz")
                    #expect(whole.status == .ok)
                    #expect(whole.body.map { Array($0.readableBytesView) } == (0..<200_000).map { UInt8($0 % 251) })
                    #expect(whole.headers[.acceptRanges] == "bytes")

                    let part = try await http.boot("/common/debian/initrd.gz", headers: [.range: "bytes=1000-1009"])
                    #expect(part.status == .partialContent)
                    #expect(part.body.map { Array($0.readableBytesView) } == (1000...1009).map { UInt8($0 % 251) })
                    #expect(part.headers[.contentRange] == "bytes 1000-1009/200000")

                    #expect(try await http.boot("/common/kernel").text == "kernel", "a link inside the root is fine")

                    for path in [
                        "/common/../Package.swift", "/common/%2e%2e/secret.txt", "/common/%2E%2E%2Fsecret.txt",
                        "/common/debian/../../secret.txt",
                        "/common/leak.txt", "/common/up/secret.txt", "/common//etc/passwd", "/common/%00", "/common/debian%00/linux",
                    ] {
                        let response = try await http.boot(path)
                        #expect((400..<500).contains(response.status.code), "\(path): \(response.status)")
                        #expect(!response.text.contains("secret"), "\(path)")
                        #expect(!response.text.contains("root:"), "\(path)")
                    }
                    #expect(try await http.boot("/common/debian/linux").text == "kernel", "still serving")
                }
            }
        }
    }

    @Suite("Management API")
    struct ManagementAPI {
        @Test("Nodes: list, show (by id or MAC, with the active graph), boot settings, workflows, cancel")
        func nodesAndWorkflows() async throws {
            try await TestBroker.withBus { bus in
                try await withRegistry(bus: bus) {
                    try await withWorkflowServices(bus: bus) {
                        let mac = uniqueMAC()
                        let node = try await bus.call(RegisterNode(macs: [mac], name: "api-node")).node
                        let graphName = "Graph.Test.API.\(UUID().uuidString.prefix(8))"
                        _ = try await bus.call(
                            DefineTaskGraph(
                                definition: GraphDefinition(
                                    friendlyName: "API wait", injectableName: graphName,
                                    tasks: [GraphTask(label: "wait", taskName: "Task.Wait", optionOverrides: ["duration": 10000])])))
                        try await withHTTPService(bus: bus, testConfiguration()) { http in
                            let list = try await http.api(.get, "/api/current/nodes")
                            #expect(list.status == .ok)
                            #expect(list.headers[.contentType]?.hasPrefix("application/json") == true)
                            guard case .array(let nodes)? = list.json else { throw TestFailure("not a list: \(list.text)") }
                            #expect(nodes.contains { $0["id"] == .string(node.id) })

                            let shown = try await http.api(.get, "/api/current/nodes/\(uriEncoded(mac))")
                            #expect(shown.status == .ok)
                            #expect(shown.json?["id"] == .string(node.id))
                            #expect(shown.json?["identifiers"] == [.string(mac)])
                            #expect(shown.json?["activeGraph"] == .null)

                            let settings = try await http.api(
                                .put, "/api/current/nodes/\(node.id)/bootSettings",
                                json: #"{"profile":"install-debian.ipxe","options":{"hostname":"h9"}}"#)
                            #expect(settings.status == .ok, "\(settings.text)")
                            #expect(settings.json?["bootSettings"]?["profile"] == "install-debian.ipxe")
                            #expect(try await bus.call(GetNode(node.id)).bootSettings?.options["hostname"] == "h9")

                            let started = try await http.api(
                                .post, "/api/current/nodes/\(node.id)/workflows", json: #"{"name":"\#(graphName)","options":{}}"#)
                            #expect(started.status == .created, "\(started.text)")
                            let graphId = try #require(started.json?["instanceId"]?.stringValue)
                            let withGraph = try await http.api(.get, "/api/current/nodes/\(node.id)")
                            #expect(withGraph.json?["activeGraph"]?["instanceId"] == .string(graphId))
                            #expect(withGraph.json?["activeGraph"]?["name"] == .string(graphName))

                            let second = try await http.api(
                                .post, "/api/current/nodes/\(node.id)/workflows", json: #"{"name":"\#(graphName)"}"#)
                            #expect(second.status == .badRequest)
                            #expect(second.json?["status"] == 400)
                            #expect(second.json?["message"] == "Unable to run multiple task graphs against a single target.")

                            let properties = try await http.api(.get, "/api/current/workflows/\(graphId)")
                            #expect(properties.status == .ok)
                            #expect(properties.json?["instanceId"] == .string(graphId))

                            let cancelled = try await http.api(.delete, "/api/current/nodes/\(node.id)/workflows/active")
                            #expect(cancelled.status == .ok, "\(cancelled.text)")
                            #expect(cancelled.json?["instanceId"] == .string(graphId))
                            try await eventually { try await bus.call(GetActiveTaskGraph(filter: GraphFilter(target: node.id))) == nil }
                            let none = try await http.api(.delete, "/api/current/nodes/\(node.id)/workflows/active")
                            #expect(none.status == .notFound)
                            #expect(none.json?["name"] == "NotFoundError")
                        }
                    }
                }
            }
        }

        @Test("Workflows: the libraries, defining a task and a graph, the active list, and RackHD's pause, resume and cancel actions")
        func workflowLibraryAndActions() async throws {
            try await TestBroker.withBus { bus in
                try await withRegistry(bus: bus) {
                    try await withWorkflowServices(bus: bus) {
                        let node = try await bus.call(RegisterNode(macs: [uniqueMAC()])).node
                        let suffix = UUID().uuidString.prefix(8)
                        try await withHTTPService(bus: bus, testConfiguration()) { http in
                            let graphs = try await http.api(.get, "/api/current/workflows/graphs")
                            #expect(graphs.status == .ok)
                            guard case .array(let library)? = graphs.json else { throw TestFailure("not a list: \(graphs.text)") }
                            #expect(library.contains { $0["injectableName"] == "Graph.noop-example" })
                            let tasks = try await http.api(.get, "/api/current/workflows/tasks")
                            guard case .array(let taskLibrary)? = tasks.json else { throw TestFailure("not a list: \(tasks.text)") }
                            #expect(taskLibrary.contains { $0["injectableName"] == "Task.noop" })

                            let task = try await http.api(
                                .put, "/api/current/workflows/tasks",
                                json:
                                    #"{"friendlyName":"Long wait","injectableName":"Task.Test.LongWait.\#(suffix)","implementsTask":"Task.Base.Wait","options":{"duration":600000},"properties":{}}"#
                            )
                            #expect(task.status == .created, "\(task.text)")
                            let graphName = "Graph.Test.Actions.\(suffix)"
                            let graph = try await http.api(
                                .put, "/api/current/workflows/graphs",
                                json:
                                    #"{"friendlyName":"Actions","injectableName":"\#(graphName)","tasks":[{"label":"wait","taskName":"Task.Test.LongWait.\#(suffix)"}]}"#
                            )
                            #expect(graph.status == .created, "\(graph.text)")
                            #expect(graph.json?["injectableName"] == .string(graphName))
                            let invalid = try await http.api(
                                .put, "/api/current/workflows/graphs",
                                json:
                                    #"{"friendlyName":"Bad","injectableName":"Graph.Test.Bad","tasks":[{"label":"x","taskName":"Task.Nope"}]}"#
                            )
                            // RackHD's answer for a graph that names a task nobody defined.
                            #expect(invalid.status == .notFound, "\(invalid.text)")
                            #expect(invalid.json?["name"] == "NotFoundError")

                            let started = try await http.api(
                                .post, "/api/current/nodes/\(node.id)/workflows", json: #"{"name":"\#(graphName)"}"#)
                            let graphId = try #require(started.json?["instanceId"]?.stringValue)
                            let active = try await http.api(.get, "/api/current/workflows")
                            guard case .array(let running)? = active.json else { throw TestFailure("not a list: \(active.text)") }
                            #expect(running.contains { $0["instanceId"] == .string(graphId) })

                            let action = "/api/current/workflows/\(graphId)/action"
                            #expect(try await http.api(.put, action, json: #"{"command":"pause"}"#).status == .accepted)
                            #expect(try await bus.call(GetActiveTaskGraph(filter: GraphFilter(instanceId: graphId)))?.status == "paused")
                            #expect(try await http.api(.put, action, json: #"{"command":"resume"}"#).status == .accepted)
                            #expect(try await bus.call(GetActiveTaskGraph(filter: GraphFilter(instanceId: graphId)))?.status == "running")
                            let unknown = try await http.api(.put, action, json: #"{"command":"reboot"}"#)
                            #expect(unknown.status == .badRequest)
                            #expect(unknown.json?["message"] == "command must be cancel, pause or resume, not 'reboot'")
                            let cancelled = try await http.api(.put, action, json: #"{"command":"cancel"}"#)
                            #expect(cancelled.status == .accepted, "\(cancelled.text)")
                            try await eventually { try await bus.call(GetActiveTaskGraph(filter: GraphFilter(instanceId: graphId))) == nil }
                            #expect(try await http.api(.put, action, json: #"{"command":"cancel"}"#).status == .notFound)
                            let shown = try await http.api(.get, "/api/current/workflows/\(graphId)")
                            #expect(shown.json?["status"] == "cancelled")
                        }
                    }
                }
            }
        }

        @Test(
            "DELETE a node (and rackbus nodes remove): refused while it runs a workflow; then it goes with its MACs and catalogs, announced as node.removed"
        )
        func removeNode() async throws {
            try await TestBroker.withBus { bus in
                try await withRegistry(bus: bus) {
                    try await withWorkflowServices(bus: bus) {
                        let mac = uniqueMAC()
                        let node = try await bus.call(RegisterNode(macs: [mac])).node
                        _ = try await bus.call(AddCatalog(nodeId: node.id, source: "smbios", data: ["manufacturer": "Acme"]))
                        let removedEvents = try await bus.subscribe(
                            to: .events, patterns: ["node.removed.\(node.id)"], as: NodeLifecycleEvent.self)
                        let graphName = "Graph.Test.Remove.\(UUID().uuidString.prefix(8))"
                        _ = try await bus.call(
                            DefineTaskGraph(
                                definition: GraphDefinition(
                                    friendlyName: "Remove", injectableName: graphName,
                                    tasks: [GraphTask(label: "wait", taskName: "Task.Wait", optionOverrides: ["duration": 600_000])])))
                        let graph = try await bus.call(RunTaskGraph(name: graphName, target: node.id))
                        try await withHTTPService(bus: bus, testConfiguration()) { http in
                            let busy = try await http.api(.delete, "/api/current/nodes/\(node.id)")
                            #expect(busy.status == .conflict, "\(busy.text)")
                            #expect(busy.json?["message"]?.stringValue?.contains(graph.instanceId) == true)
                            _ = try await bus.call(CancelTaskGraph(filter: GraphFilter(instanceId: graph.instanceId)))
                            try await eventually { try await bus.call(GetActiveTaskGraph(filter: GraphFilter(target: node.id))) == nil }

                            let removed = try await http.api(.delete, "/api/current/nodes/\(uriEncoded(mac))")
                            #expect(removed.status == .ok, "\(removed.text)")
                            #expect(removed.json?["id"] == .string(node.id))
                            let event = try await collect(removedEvents, count: 1)[0].message
                            #expect(event.action == "removed" && event.nodeId == node.id && event.data.identifiers == [mac])
                            #expect(try await http.api(.get, "/api/current/nodes/\(node.id)").status == .notFound)
                            #expect(try await http.api(.delete, "/api/current/nodes/\(node.id)").status == .notFound)
                            // Its MAC is free: registering it makes a new node, with no catalogs.
                            let again = try await bus.call(RegisterNode(macs: [mac]))
                            #expect(again.created && again.node.catalogs.isEmpty)

                            // The same through the command-line tool: refused while a workflow runs (exit 1), then done.
                            let cli = { (arguments: [String]) in
                                try await TestBroker.run(
                                    ServiceProcess.executable.path,
                                    ["nodes", "remove"] + arguments + [
                                        "--url", TestBroker.url, "--prefix", bus.configuration.exchangePrefix,
                                    ])
                            }
                            let rerun = try await bus.call(RunTaskGraph(name: graphName, target: again.node.id))
                            let refused = await #expect(throws: TestFailure.self) { _ = try await cli([mac]) }
                            let refusal = "\(refused.map { "\($0)" } ?? "")"
                            #expect(refusal.contains("exited 1") && refusal.contains("cancel it first"), "\(refusal)")
                            _ = try await bus.call(CancelTaskGraph(filter: GraphFilter(instanceId: rerun.instanceId)))
                            try await eventually { try await bus.call(GetActiveTaskGraph(filter: GraphFilter(target: node.id))) == nil }
                            let output = try await cli([mac, "--json"])
                            let removedByCLI = try JSONDecoder().decode(Node.self, from: Data(output.utf8))
                            #expect(removedByCLI.id == again.node.id)
                            await #expect(throws: BusError.self) { try await bus.call(GetNode(mac)) }
                        }
                    }
                }
            }
        }

        @Test("A workflow POST retried with its Idempotency-Key gets the graph it started; a bad key is a 400, a reused one a 409")
        func workflowRetry() async throws {
            try await TestBroker.withBus { bus in
                try await withRegistry(bus: bus) {
                    try await withWorkflowServices(bus: bus) {
                        let node = try await bus.call(RegisterNode(macs: [uniqueMAC()])).node
                        let graphName = "Graph.Test.Retry.\(UUID().uuidString.prefix(8))"
                        _ = try await bus.call(
                            DefineTaskGraph(
                                definition: GraphDefinition(
                                    friendlyName: "API retry", injectableName: graphName,
                                    tasks: [GraphTask(label: "wait", taskName: "Task.Wait", optionOverrides: ["duration": 600_000])])))
                        try await withHTTPService(bus: bus, testConfiguration()) { http in
                            let path = "/api/current/nodes/\(node.id)/workflows"
                            let key = "retry-\(UUID().uuidString)"
                            let body = #"{"name":"\#(graphName)"}"#
                            let first = try await http.api(.post, path, json: body, headers: ["Idempotency-Key": key])
                            #expect(first.status == .created, "\(first.text)")
                            let graphId = try #require(first.json?["instanceId"]?.stringValue)
                            let again = try await http.api(.post, path, json: body, headers: ["Idempotency-Key": key])
                            #expect(again.status == .created, "\(again.text)")
                            #expect(again.json?["instanceId"] == .string(graphId))

                            let bad = try await http.api(.post, path, json: body, headers: ["Idempotency-Key": "has space"])
                            #expect(bad.status == .badRequest)
                            #expect(bad.json?["message"] == "Idempotency-Key must be 1 to 255 visible ASCII characters")
                            let reused = try await http.api(
                                .post, path, json: #"{"name":"Graph.noop-example"}"#, headers: ["Idempotency-Key": key])
                            #expect(reused.status == .conflict, "\(reused.text)")
                            #expect(reused.json?["name"] == "ConflictError")
                            #expect(try await bus.call(GetActiveTaskGraphs()).map(\.instanceId) == [graphId])
                            _ = try await bus.call(CancelTaskGraph(filter: GraphFilter(instanceId: graphId)))
                        }
                    }
                }
            }
        }

        @Test("Errors are {status, name, message}: unknown node, bad bodies, unknown graph, unknown route, body too large")
        func errors() async throws {
            try await TestBroker.withBus { bus in
                try await withRegistry(bus: bus) {
                    try await withWorkflowServices(bus: bus) {
                        let node = try await bus.call(RegisterNode(macs: [uniqueMAC()])).node
                        try await withHTTPService(bus: bus, testConfiguration()) { http in
                            let missing = try await http.api(.get, "/api/current/nodes/nobody")
                            #expect(missing.status == .notFound)
                            #expect(missing.json?["status"] == 404)
                            #expect(missing.json?["name"] == "NotFoundError")
                            #expect(missing.json?["message"]?.stringValue?.isEmpty == false)

                            let notJSON = try await http.api(.put, "/api/current/nodes/\(node.id)/bootSettings", json: "{not json")
                            #expect(notJSON.status == .badRequest)
                            #expect(notJSON.json?["name"] == "BadRequestError")
                            let wrongShape = try await http.api(
                                .put, "/api/current/nodes/\(node.id)/bootSettings", json: #"{"options": 3}"#)
                            #expect(wrongShape.status == .badRequest)
                            let badProfile = try await http.api(
                                .put, "/api/current/nodes/\(node.id)/bootSettings", json: #"{"profile":"../x","options":{}}"#)
                            #expect(badProfile.status == .badRequest)
                            let empty = try await http.api(.post, "/api/current/nodes/\(node.id)/workflows")
                            #expect(empty.status == .badRequest)

                            let unknownGraph = try await http.api(
                                .post, "/api/current/nodes/\(node.id)/workflows", json: #"{"name":"Graph.Nope"}"#)
                            #expect((400..<500).contains(unknownGraph.status.code), "\(unknownGraph.text)")
                            #expect(unknownGraph.json?["message"]?.stringValue?.contains("Graph.Nope") == true, "\(unknownGraph.text)")
                            let unknownWorkflow = try await http.api(.get, "/api/current/workflows/nope")
                            #expect(unknownWorkflow.status == .notFound, "\(unknownWorkflow.text)")

                            let route = try await http.api(.get, "/api/current/nothing")
                            #expect(route.status == .notFound)
                            #expect(route.json?["status"] == 404)

                            let huge = "{\"name\":\"" + String(repeating: "x", count: 300_000) + "\"}"
                            let tooLarge = try await http.api(.post, "/api/current/skus", json: huge)
                            #expect(tooLarge.status == .contentTooLarge)
                            #expect(tooLarge.json?["status"] == 413)
                        }
                    }
                }
            }
        }

        @Test("SKUs: define, list, and the registry's 400 passed through")
        func skus() async throws {
            try await TestBroker.withBus { bus in
                try await withRegistry(bus: bus) {
                    try await withHTTPService(bus: bus, testConfiguration()) { http in
                        let defined = try await http.api(
                            .post, "/api/current/skus", json: #"{"name":"qemu","rules":[{"path":"smbios.manufacturer","equals":"QEMU"}]}"#)
                        #expect(defined.status == .created, "\(defined.text)")
                        #expect(defined.json?["name"] == "qemu")
                        let list = try await http.api(.get, "/api/current/skus")
                        #expect(list.status == .ok)
                        guard case .array(let skus)? = list.json else { throw TestFailure("not a list: \(list.text)") }
                        #expect(skus.contains { $0["name"] == "qemu" })
                        let invalid = try await http.api(.post, "/api/current/skus", json: #"{"name":"bad","rules":[{"path":"smbios.x"}]}"#)
                        #expect(invalid.status == .badRequest, "\(invalid.text)")
                        #expect(invalid.json?["message"]?.stringValue?.isEmpty == false)
                    }
                }
            }
        }

        @Test("Nobody answering is a 504")
        func timeout() async throws {
            try await TestBroker.withBus { bus in
                var configuration = testConfiguration()
                configuration.serviceCallTimeout = .milliseconds(300)
                try await withHTTPService(bus: bus, configuration) { http in
                    let response = try await http.api(.get, "/api/current/nodes")
                    #expect(response.status == .gatewayTimeout)
                    #expect(response.json?["status"] == 504)
                }
            }
        }

        @Test("With a token: none or a wrong one is a 401, the right one passes")
        func token() async throws {
            try await TestBroker.withBus { bus in
                try await withRegistry(bus: bus) {
                    try await withHTTPService(bus: bus, testConfiguration(apiToken: "s3cret-token")) { http in
                        let none = try await http.api(.get, "/api/current/nodes")
                        #expect(none.status == .unauthorized)
                        #expect(none.json?["status"] == 401)
                        #expect(none.headers[.wwwAuthenticate] == "Bearer")
                        #expect(try await http.api(.get, "/api/current/nodes", token: "s3cret-tokem").status == .unauthorized)
                        #expect(try await http.api(.get, "/api/current/nodes", token: "s3cret").status == .unauthorized)
                        #expect(try await http.api(.get, "/api/current/nodes", token: "s3cret-token").status == .ok)
                        // The boot application never asks for one.
                        #expect(try await http.boot("/api/current/profiles?macs=\(uniqueMAC())").status != .unauthorized)
                    }
                }
            }
        }

        @Test("The service refuses to start with the API on 0.0.0.0 and no token")
        func refusesExposedAPI() async throws {
            try await TestBroker.withBus { bus in
                var configuration = testConfiguration()
                configuration.apiListen = ListenAddress(host: "0.0.0.0", port: 0)
                let service = HTTPService(bus: bus, configuration: configuration, logger: TestBroker.logger)
                await #expect {
                    try await service.run()
                } throws: { error in
                    (error as? HTTPConfigurationError)?.message.contains("RACKBUS_HTTP_API_TOKEN") == true
                }
                #expect(service.apiPort == nil)
            }
        }
    }

    @Suite("Bad input")
    struct BadInput {
        @Test("Malformed queries, non-MACs and missing MACs are 400s; the server keeps serving")
        func malformedQueries() async throws {
            try await TestBroker.withBus { bus in
                try await withRegistry(bus: bus) {
                    try await withHTTPService(bus: bus, testConfiguration(unknownNodes: .bootLocal)) { http in
                        for path in [
                            "/api/current/profiles?macs=%zz", "/api/current/profiles?macs=notamac", "/api/current/profiles",
                            "/api/current/profiles?ips=10.0.0.1", "/api/current/profiles?macs=52:54:00:00:00",
                            "/api/current/profiles?macs=%", "/api/current/profiles?macs=52:54:00:00:00:01&ips=notanip",
                            "/api/current/templates/preseed.cfg?nodeId=%zz",
                        ] {
                            let response = try await http.boot(path)
                            #expect(response.status == .badRequest, "\(path): \(response.status)")
                            #expect(!response.text.isEmpty, "\(path): a reason is given")
                        }
                        #expect(try await http.boot("/api/current/profiles?macs=\(uniqueMAC())").status == .ok)
                    }
                }
            }
        }

        @Test("A reply the API cannot read is a generic 500 with an error id, not the decoder's description")
        func unreadableReplyIsConcealed() async throws {
            try await TestBroker.withBus { bus in
                // A registry stand-in on the real broker that answers getNode with a body that is no Node.
                let registry = try await bus.rawServer(exchangeNamed: bus.name(of: GetNode.exchange), routingKey: GetNode.method) { _, _ in
                    ServedReply(body: Array(#"{"value": {"id": 42}}"#.utf8))
                }
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { await registry.run() }
                    defer { group.cancelAll() }
                    try await withHTTPService(bus: bus, testConfiguration()) { http in
                        for _ in 0..<2 {
                            let response = try await http.api(.get, "/api/current/nodes/somebody")
                            #expect(response.status == .internalServerError)
                            #expect(response.text.contains("InternalServerError"), "\(response.text)")
                            #expect(response.text.contains("error id"), "\(response.text)")
                            #expect(!response.text.contains("decode"), "\(response.text)")
                            #expect(!response.text.contains("Node"), "\(response.text)")
                        }
                    }
                }
            }
        }

        @Test("A 100 KB header is refused or the connection closed, and the next request is served")
        func hugeHeader() async throws {
            try await TestBroker.withBus { bus in
                try await withRegistry(bus: bus) {
                    try await withHTTPService(bus: bus, testConfiguration(unknownNodes: .bootLocal)) { http in
                        for port in [http.bootPort, http.apiPort] {
                            var headers = HTTPFields()
                            headers[.userAgent] = String(repeating: "a", count: 100_000)
                            do {
                                let response = try await RunningHTTP.request(
                                    port: port,
                                    TestClient.Request("/api/current/profiles?macs=\(uniqueMAC())", method: .get, headers: headers))
                                #expect((400..<500).contains(response.status.code), "\(response.status)")
                            } catch {
                                // The server closed the connection: also a refusal.
                            }
                        }
                        let boot = try await http.boot("/api/current/profiles?macs=\(uniqueMAC())")
                        let api = try await http.api(.get, "/api/current/nodes")
                        #expect(boot.status == .ok)
                        #expect(api.status == .ok)
                    }
                }
            }
        }
    }
}
