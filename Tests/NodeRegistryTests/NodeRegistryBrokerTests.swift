import BusCore
import BusTestSupport
import Foundation
import NodeProtocol
import Testing

@testable import NodeRegistry

/// Runs a node registry on `databasePath` for the duration of `body`.
func withRegistry<Result: Sendable>(
    databasePath: String = ":memory:", on bus: MessageBus, _ body: @Sendable (NodeRegistryService) async throws -> Result
) async throws -> Result {
    let service = NodeRegistryService(
        bus: bus, configuration: NodeRegistryConfiguration(databasePath: databasePath), logger: TestBroker.logger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await service.run() }
        defer { group.cancelAll() }
        await service.waitUntilReady()
        return try await body(service)
    }
}

/// A bus and a registry on it, for the duration of `body`.
func withRegistry<Result: Sendable>(_ body: @Sendable (MessageBus) async throws -> Result) async throws -> Result {
    try await TestBroker.withBus { bus in
        try await withRegistry(on: bus) { _ in try await body(bus) }
    }
}

/// The status of the ErrorEvent a call was answered with.
func status<Reply>(of call: () async throws -> Reply) async -> Int? {
    do {
        _ = try await call()
        return nil
    } catch let error as BusError {
        return error.status
    } catch {
        return nil
    }
}

func temporaryDatabasePath() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-nodes-\(UUID().uuidString)/nodes.sqlite").path
}

/// Every suite that runs a registry, one test at a time. (Each test's bus has its own exchange
/// prefix, so its RPC queues are its own; serializing also keeps the two cores for one at a time.)
@Suite("Node registry on the real broker", .serialized, .timeLimit(.minutes(3)))
struct NodeRegistryBrokerTests {}

extension NodeRegistryBrokerTests {
    @Suite("registerNode and the node.discovered event")
    struct Registration {
        @Test("a new MAC creates a node named after it; other spellings find it; new MACs are added")
        func registers() async throws {
            try await withRegistry { bus in
                let first = try await bus.call(RegisterNode(macs: ["52-54-00-AA-00-01"]))
                #expect(first.created)
                #expect(first.node.id == "525400aa0001")
                #expect(first.node.name == "52:54:00:aa:00:01")
                #expect(first.node.type == "compute")
                #expect(first.node.identifiers == ["52:54:00:aa:00:01"])
                #expect(first.node.sku == nil && first.node.bootSettings == nil && first.node.catalogs.isEmpty)

                let again = try await bus.call(RegisterNode(macs: ["525400aa0001"], name: "ignored", type: "switch"))
                #expect(!again.created)
                #expect(again.node == first.node, "registering a known MAC changes nothing")

                let grown = try await bus.call(RegisterNode(macs: ["52:54:00:aa:00:02", "52:54:00:AA:00:01"]))
                #expect(!grown.created)
                #expect(grown.node.id == "525400aa0001")
                #expect(grown.node.identifiers == ["52:54:00:aa:00:01", "52:54:00:aa:00:02"])

                let named = try await bus.call(RegisterNode(macs: ["52:54:00:aa:00:03"], name: "rack1-u7", type: "switch"))
                #expect(named.created)
                #expect(named.node.name == "rack1-u7")
                #expect(named.node.type == "switch")
                #expect(try await bus.call(ListNodes()).map(\.id) == ["525400aa0001", "525400aa0003"])
            }
        }

        @Test("no MACs or an invalid one is a 400, MACs of two nodes a 409, a malformed body a 400; it keeps serving")
        func refusesBadRegistrations() async throws {
            try await withRegistry { bus in
                #expect(await status { try await bus.call(RegisterNode(macs: [])) } == 400)
                #expect(await status { try await bus.call(RegisterNode(macs: ["52:54:00:aa:01:01", "not-a-mac"])) } == 400)
                _ = try await bus.call(RegisterNode(macs: ["52:54:00:aa:01:01"]))
                _ = try await bus.call(RegisterNode(macs: ["52:54:00:aa:01:02"]))
                let conflict = await #expect(throws: BusError.self) {
                    _ = try await bus.call(RegisterNode(macs: ["52:54:00:aa:01:01", "52:54:00:aa:01:02"]))
                }
                #expect(conflict?.status == 409)
                #expect(conflict?.remote?.name == "ConflictError")
                for body in [#"{"macs":"52:54:00:aa:01:03"}"#, "[1,2]", "not json"] {
                    let malformed = await #expect(throws: BusError.self) {
                        _ = try await bus.callRaw(
                            exchangeNamed: bus.name(of: .http), routingKey: RegisterNode.method, body: Array(body.utf8), type: "Object")
                    }
                    #expect(malformed?.status == 400, "\(body)")
                }
                #expect(try await bus.call(ListNodes()).count == 2, "nothing was created by the refused calls")
            }
        }

        @Test("node.discovered.<nodeId> is published once per node, with the node and an ISO 8601 time")
        func discoveredOncePerNode() async throws {
            try await withRegistry { bus in
                let events = try await bus.subscribe(to: .events, patterns: ["node.discovered.*"], as: NodeLifecycleEvent.self)
                let created = try await bus.call(RegisterNode(macs: ["52:54:00:aa:02:01"])).node
                _ = try await bus.call(RegisterNode(macs: ["52-54-00-aa-02-01"]))
                _ = try await bus.call(RegisterNode(macs: ["52:54:00:aa:02:01", "52:54:00:aa:02:09"]))
                let second = try await bus.call(RegisterNode(macs: ["52:54:00:aa:02:02"])).node

                let received = try await collect(events, count: 2)
                #expect(received.map(\.routingKey) == ["node.discovered.525400aa0201", "node.discovered.525400aa0202"])
                let event = received[0].message
                #expect(event.type == "node" && event.action == "discovered" && event.severity == "information")
                #expect(event.nodeId == created.id && event.typeId == created.id)
                #expect(event.data == created)
                #expect(received[1].message.data == second)
                let iso8601 = ISO8601DateFormatter()
                iso8601.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
                let time = try #require(iso8601.date(from: event.createdAt), "\(event.createdAt)")
                #expect(abs(time.timeIntervalSince1970 * 1000 - Double(created.createdAt)) < 1)
                #expect(await drain(events, for: .milliseconds(500)).isEmpty, "no event for known nodes")
            }
        }

        @Test("20 concurrent registrations of one MAC create one node and one event")
        func concurrentRegistrations() async throws {
            try await withRegistry { bus in
                let events = try await bus.subscribe(to: .events, patterns: ["node.discovered.*"], as: NodeLifecycleEvent.self)
                let spellings = ["52:54:00:aa:03:01", "52-54-00-AA-03-01", "525400aa0301", "52:54:00:AA:03:01"]
                let replies = try await withThrowingTaskGroup(of: RegisterNode.Registered.self) { group in
                    for index in 0..<20 {
                        group.addTask { try await bus.call(RegisterNode(macs: [spellings[index % spellings.count]])) }
                    }
                    var replies: [RegisterNode.Registered] = []
                    for try await reply in group { replies.append(reply) }
                    return replies
                }
                #expect(replies.count == 20)
                #expect(replies.filter(\.created).count == 1)
                #expect(Set(replies.map(\.node.id)) == ["525400aa0301"])
                #expect(try await bus.call(ListNodes()).count == 1)
                #expect(try await collect(events, count: 1).count == 1)
                #expect(await drain(events, for: .milliseconds(500)).isEmpty)
            }
        }
    }

    @Suite("getNode, listNodes, setBootSettings and addCatalog")
    struct Nodes {
        @Test("getNode finds a node by id or any MAC spelling; unknown ones are 404; listNodes is oldest first")
        func lookUps() async throws {
            try await withRegistry { bus in
                let first = try await bus.call(RegisterNode(macs: ["52:54:00:aa:04:01", "52:54:00:aa:04:02"])).node
                let second = try await bus.call(RegisterNode(macs: ["52:54:00:aa:04:03"])).node
                for key in ["525400aa0401", "52:54:00:aa:04:01", "52-54-00-AA-04-02", "525400AA0402"] {
                    #expect(try await bus.call(GetNode(key)) == first, "\(key)")
                }
                let unknown = await #expect(throws: BusError.self) { _ = try await bus.call(GetNode("52:54:00:aa:04:09")) }
                #expect(unknown?.status == 404)
                #expect(unknown?.remote?.name == "NotFoundError")
                #expect(await status { try await bus.call(GetNode("no-such-node")) } == 404)
                #expect(try await bus.call(ListNodes()) == [first, second])
            }
        }

        @Test("setBootSettings replaces and clears settings; a path as profile is a 400; an unknown node a 404")
        func bootSettings() async throws {
            try await withRegistry { bus in
                let node = try await bus.call(RegisterNode(macs: ["52:54:00:aa:05:01"])).node
                let settings = BootSettings(profile: "install-debian.ipxe", options: ["hostname": "n1", "disks": 2], networkBoot: true)
                let set = try await bus.call(SetBootSettings(nodeId: node.id, bootSettings: settings))
                #expect(set.bootSettings == settings)
                #expect(set.updatedAt >= node.updatedAt)
                #expect(try await bus.call(GetNode(node.id)).bootSettings == settings)

                let local = BootSettings(networkBoot: false)
                #expect(try await bus.call(SetBootSettings(nodeId: node.id, bootSettings: local)).bootSettings == local)
                #expect(try await bus.call(SetBootSettings(nodeId: node.id, bootSettings: nil)).bootSettings == nil)
                #expect(try await bus.call(GetNode(node.id)).bootSettings == nil)

                for profile in ["../../etc/passwd", "x/boot.ipxe", ".."] {
                    let refused = await #expect(throws: BusError.self) {
                        _ = try await bus.call(SetBootSettings(nodeId: node.id, bootSettings: BootSettings(profile: profile)))
                    }
                    #expect(refused?.status == 400, "\(profile)")
                    #expect(refused?.remote?.message.contains("plain file name") == true)
                }
                #expect(
                    await status { try await bus.call(SetBootSettings(nodeId: "525400ffffff", bootSettings: settings)) } == 404)
            }
        }

        @Test("addCatalog keeps the latest catalog per source; a bad source is a 400, an unknown node a 404")
        func catalogs() async throws {
            try await withRegistry { bus in
                let node = try await bus.call(RegisterNode(macs: ["52:54:00:aa:06:01"])).node
                let dmi = try await bus.call(AddCatalog(nodeId: node.id, source: "dmi", data: ["vendor": "old"]))
                #expect(dmi.source == "dmi" && dmi.data == ["vendor": "old"])
                _ = try await bus.call(AddCatalog(nodeId: node.id, source: "ohai", data: ["cpu": ["total": 8]]))
                _ = try await bus.call(AddCatalog(nodeId: node.id, source: "dmi", data: ["vendor": "new"]))
                let stored = try await bus.call(GetNode(node.id))
                #expect(stored.catalogs.map(\.source) == ["dmi", "ohai"], "a replaced source keeps its place")
                #expect(stored.catalog("dmi")?.data == ["vendor": "new"])
                #expect(stored.catalog("ohai")?.data == ["cpu": ["total": 8]])

                for source in ["", "two words", "a/b"] {
                    #expect(await status { try await bus.call(AddCatalog(nodeId: node.id, source: source, data: [:])) } == 400, "\(source)")
                }
                #expect(await status { try await bus.call(AddCatalog(nodeId: "525400ffffff", source: "dmi", data: [:])) } == 404)
                #expect(try await bus.call(GetNode(node.id)).catalogs.count == 2)
            }
        }
    }

    @Suite("defineSku, listSkus and assignSku")
    struct SKUs {
        static let quanta = SKUDefinition(
            name: "quanta-d51b",
            rules: [
                SKURule(path: "dmi.System Information.Manufacturer", equals: "Quanta"),
                SKURule(path: "ohai.cpu.total", matches: "^(16|32)$"),
            ])
        static let anyQuanta = SKUDefinition(
            name: "any-quanta", rules: [SKURule(path: "dmi.System Information.Manufacturer", contains: "Quanta")])

        @Test("defineSku stores and replaces by name; listSkus lists by name; invalid definitions are 400s naming the problem")
        func defineAndList() async throws {
            try await withRegistry { bus in
                #expect(try await bus.call(DefineSKU(Self.quanta)) == Self.quanta)
                #expect(try await bus.call(DefineSKU(Self.anyQuanta)) == Self.anyQuanta)
                #expect(try await bus.call(ListSKUs()) == [Self.anyQuanta, Self.quanta])
                let replacement = SKUDefinition(name: "quanta-d51b", rules: [SKURule(path: "dmi.x", equals: 1)])
                _ = try await bus.call(DefineSKU(replacement))
                #expect(try await bus.call(ListSKUs()) == [Self.anyQuanta, replacement])

                let invalid: [(SKUDefinition, String)] = [
                    (SKUDefinition(name: "", rules: Self.quanta.rules), "name is empty"),
                    (SKUDefinition(name: "none", rules: []), "at least one rule"),
                    (SKUDefinition(name: "nopath", rules: [SKURule(path: "", equals: 1)]), "rule 1 has no path"),
                    (SKUDefinition(name: "two", rules: [SKURule(path: "a", contains: "x", matches: "x")]), "exactly one of"),
                    (SKUDefinition(name: "regex", rules: [SKURule(path: "a", matches: "[unclosed")]), "not a regular expression"),
                ]
                for (definition, problem) in invalid {
                    let refused = await #expect(throws: BusError.self) { _ = try await bus.call(DefineSKU(definition)) }
                    #expect(refused?.status == 400, "\(problem)")
                    #expect(refused?.remote?.message.contains(problem) == true, "\(refused?.remote?.message ?? "") should say \(problem)")
                }
                #expect(try await bus.call(ListSKUs()).count == 2)
            }
        }

        @Test("assignSku stores the most specific match and publishes sku.assigned; no match clears it without an event")
        func assign() async throws {
            try await withRegistry { bus in
                let events = try await bus.subscribe(to: .events, patterns: ["sku.assigned.*"], as: SKUAssignedEvent.self)
                _ = try await bus.call(DefineSKU(Self.quanta))
                _ = try await bus.call(DefineSKU(Self.anyQuanta))
                let node = try await bus.call(RegisterNode(macs: ["52:54:00:aa:07:01"])).node
                _ = try await bus.call(
                    AddCatalog(nodeId: node.id, source: "dmi", data: ["System Information": ["Manufacturer": "Quanta"]]))
                _ = try await bus.call(AddCatalog(nodeId: node.id, source: "ohai", data: ["cpu": ["total": 32]]))

                #expect(try await bus.call(AssignSKU(nodeId: node.id)) == AssignSKU.Assigned(sku: "quanta-d51b"))
                let assigned = try await collect(events, count: 1)
                #expect(assigned[0].routingKey == "sku.assigned.525400aa0701")
                #expect(assigned[0].message == SKUAssignedEvent(sku: "quanta-d51b"))
                #expect(try await bus.call(GetNode(node.id)).sku == "quanta-d51b")

                _ = try await bus.call(AddCatalog(nodeId: node.id, source: "ohai", data: ["cpu": ["total": 8]]))
                #expect(try await bus.call(AssignSKU(nodeId: node.id)).sku == "any-quanta", "the less specific SKU still matches")
                #expect(try await collect(events, count: 1)[0].message.sku == "any-quanta")

                _ = try await bus.call(AddCatalog(nodeId: node.id, source: "dmi", data: ["System Information": ["Manufacturer": "Dell"]]))
                #expect(try await bus.call(AssignSKU(nodeId: node.id)) == AssignSKU.Assigned(sku: nil))
                #expect(try await bus.call(GetNode(node.id)).sku == nil, "no match clears the stored SKU")
                #expect(await drain(events, for: .milliseconds(500)).isEmpty, "no event without a match")

                #expect(await status { try await bus.call(AssignSKU(nodeId: "525400ffffff")) } == 404)
            }
        }

        @Test("a node without catalogs gets no SKU and no event")
        func noCatalogs() async throws {
            try await withRegistry { bus in
                let events = try await bus.subscribe(to: .events, patterns: ["sku.assigned.*"], as: SKUAssignedEvent.self)
                _ = try await bus.call(DefineSKU(Self.anyQuanta))
                let node = try await bus.call(RegisterNode(macs: ["52:54:00:aa:08:01"])).node
                #expect(try await bus.call(AssignSKU(nodeId: node.id)).sku == nil)
                #expect(try await bus.call(GetNode(node.id)).sku == nil)
                #expect(await drain(events, for: .milliseconds(500)).isEmpty)
            }
        }
    }

    @Suite("persistence")
    struct Persistence {
        @Test("nodes, MACs, boot settings, catalogs, the assigned SKU and SKU definitions survive a restart")
        func survivesRestart() async throws {
            let path = temporaryDatabasePath()
            defer { try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path) }
            try await TestBroker.withBus { bus in
                let before = try await withRegistry(databasePath: path, on: bus) { _ in
                    let node = try await bus.call(RegisterNode(macs: ["52:54:00:aa:09:01", "52:54:00:aa:09:02"], name: "n9")).node
                    _ = try await bus.call(
                        SetBootSettings(nodeId: node.id, bootSettings: BootSettings(profile: "p.ipxe", options: ["k": "v"])))
                    _ = try await bus.call(
                        AddCatalog(nodeId: node.id, source: "dmi", data: ["System Information": ["Manufacturer": "Quanta"]]))
                    _ = try await bus.call(DefineSKU(SKUs.anyQuanta))
                    _ = try await bus.call(AssignSKU(nodeId: node.id))
                    return try await bus.call(GetNode(node.id))
                }
                #expect(before.sku == "any-quanta")
                try await withRegistry(databasePath: path, on: bus) { _ in
                    #expect(try await bus.call(ListNodes()) == [before])
                    #expect(try await bus.call(GetNode("52-54-00-aa-09-02")) == before)
                    #expect(try await bus.call(ListSKUs()) == [SKUs.anyQuanta])
                    let again = try await bus.call(RegisterNode(macs: ["52:54:00:aa:09:01"]))
                    #expect(!again.created, "a restarted registry still knows the MAC")
                }
            }
        }
    }
}
