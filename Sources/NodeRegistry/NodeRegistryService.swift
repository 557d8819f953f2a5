import BusCore
import Foundation
import Logging
import Metrics
import NodeProtocol
import ServiceLifecycle

/// The node registry: the only owner of nodes, their boot settings and catalogs, and SKU
/// definitions, kept in SQLite. Answers the eight node RPCs on `on.http` and announces
/// `node.discovered.<nodeId>` and `sku.assigned.<nodeId>` on `on.events`. A `Service`: put it
/// after the `MessageBus` in a `ServiceGroup`. Run one: it is the only writer of its store.
public final class NodeRegistryService: Service, Sendable {
    public let configuration: NodeRegistryConfiguration
    private let bus: MessageBus
    private let logger: Logger
    private let readiness = OneShotSignal()
    private let registered = Counter(label: "rackbus_nodes_registered_total")

    public init(bus: MessageBus, configuration: NodeRegistryConfiguration, logger: Logger = Logger(label: "rackbus.nodes")) {
        self.bus = bus
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        let store = try await NodeStore.open(path: configuration.databasePath)
        let handlers = NodeRPCHandlers(store: store, bus: bus, logger: logger, registered: registered)
        let servers = try await handlers.servers()
        logger.notice("serving the node registry", metadata: ["nodes.database": "\(configuration.databasePath)"])
        readiness.signal()
        await withDiscardingTaskGroup { group in
            for server in servers {
                group.addTask { await server.run() }
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }
    }

    /// Returns once the store is open and the RPCs are consuming (also when the waiting task is cancelled).
    public func waitUntilReady() async {
        await readiness.wait()
    }
}

/// Serves the eight node RPCs from a ``NodeStore``.
struct NodeRPCHandlers: Sendable {
    let store: NodeStore
    let bus: MessageBus
    let logger: Logger
    let registered: Counter

    /// Creates the eight servers (bound and consuming when this returns).
    func servers() async throws -> [RPCServer] {
        [
            try await bus.server(for: GetNode.self) { request, _ in try await getNode(request) },
            try await bus.server(for: ListNodes.self) { _, _ in try await store.nodes() },
            try await bus.server(for: RemoveNode.self) { request, _ in try await removeNode(request) },
            try await bus.server(for: RegisterNode.self) { request, _ in try await registerNode(request) },
            try await bus.server(for: SetBootSettings.self) { request, _ in try await setBootSettings(request) },
            try await bus.server(for: AddCatalog.self) { request, _ in try await addCatalog(request) },
            try await bus.server(for: DefineSKU.self) { request, _ in try await defineSKU(request) },
            try await bus.server(for: ListSKUs.self) { _, _ in try await store.skus() },
            try await bus.server(for: AssignSKU.self) { request, _ in try await assignSKU(request) },
        ]
    }

    func getNode(_ request: GetNode) async throws -> Node {
        guard let node = try await store.node(idOrMAC: request.value) else { throw Self.unknownNode(request.value) }
        return node
    }

    func registerNode(_ request: RegisterNode) async throws -> RegisterNode.Registered {
        let macs = try NodeValidation.normalizedMACs(request.macs)
        // An empty name or type is taken as none given.
        let name = request.name.flatMap { $0.isEmpty ? nil : $0 }
        let type = request.type.flatMap { $0.isEmpty ? nil : $0 }
        let (node, created) = try await store.register(macs: macs, name: name, type: type, now: Self.now())
        if created {
            registered.increment()
            logger.notice("node discovered", metadata: ["nodeId": "\(node.id)", "node.macs": "\(node.identifiers.joined(separator: ","))"])
            await publish(
                NodeLifecycleEvent(.discovered, node: node, createdAt: Self.iso8601(milliseconds: node.createdAt)),
                routingKey: NodeLifecycleEvent.routingKey(.discovered, nodeId: node.id))
        }
        return RegisterNode.Registered(node: node, created: created)
    }

    func removeNode(_ request: RemoveNode) async throws -> Node {
        guard let node = try await store.remove(idOrMAC: request.value) else { throw Self.unknownNode(request.value) }
        logger.notice("node removed", metadata: ["nodeId": "\(node.id)", "node.macs": "\(node.identifiers.joined(separator: ","))"])
        await publish(
            NodeLifecycleEvent(.removed, node: node, createdAt: Self.iso8601(milliseconds: Self.now())),
            routingKey: NodeLifecycleEvent.routingKey(.removed, nodeId: node.id))
        return node
    }

    func setBootSettings(_ request: SetBootSettings) async throws -> Node {
        try NodeValidation.validate(request.bootSettings)
        guard let node = try await store.setBootSettings(nodeId: request.nodeId, request.bootSettings, now: Self.now()) else {
            throw Self.unknownNode(request.nodeId)
        }
        return node
    }

    func addCatalog(_ request: AddCatalog) async throws -> Catalog {
        try NodeValidation.validateCatalogSource(request.source)
        let catalog = Catalog(source: request.source, data: request.data, createdAt: Self.now())
        guard try await store.addCatalog(nodeId: request.nodeId, catalog) else { throw Self.unknownNode(request.nodeId) }
        return catalog
    }

    func defineSKU(_ request: DefineSKU) async throws -> SKUDefinition {
        try NodeValidation.validate(request.value)
        try await store.defineSKU(request.value, now: Self.now())
        logger.info("SKU defined", metadata: ["sku": "\(request.value.name)", "sku.rules": "\(request.value.rules.count)"])
        return request.value
    }

    func assignSKU(_ request: AssignSKU) async throws -> AssignSKU.Assigned {
        guard let assigned = try await store.assignSKU(nodeId: request.nodeId, now: Self.now()) else {
            throw Self.unknownNode(request.nodeId)
        }
        if let sku = assigned.sku {
            logger.info("SKU assigned", metadata: ["nodeId": "\(request.nodeId)", "sku": "\(sku)"])
            await publish(SKUAssignedEvent(sku: sku), routingKey: SKUAssignedEvent.routingKey(nodeId: request.nodeId))
        }
        return assigned
    }

    /// Events are announcements: a failed publish is logged, and the change it announces stands.
    private func publish<Event: Encodable & Sendable>(_ event: Event, routingKey: String) async {
        do {
            try await bus.publish(event, to: .events, routingKey: routingKey)
        } catch {
            logger.warning("could not publish an event", metadata: ["amqp.routing_key": "\(routingKey)", "error": "\(error)"])
        }
    }

    static func unknownNode(_ value: String) -> ErrorEvent {
        .notFound("No node '\(value)'.", context: ["value": .string(value)])
    }

    static func now() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }

    static func iso8601(milliseconds: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
    }
}
