import BusCore
import Foundation
import Hummingbird
import NodeProtocol
import WorkflowProtocol

/// The management API's routes: nodes, their boot settings and workflows, and SKUs. Every answer
/// is JSON; failures are ``APIError``s.
struct ManagementRoutes: Sendable {
    let bus: MessageBus
    let configuration: HTTPConfiguration

    func add(to router: Router<BasicRequestContext>) {
        let base = "/api/current"
        router.get("\(base)/nodes") { _, _ in try await listNodes() }
        router.get("\(base)/nodes/:id") { _, context in try await showNode(try Self.parameter("id", context)) }
        router.delete("\(base)/nodes/:id") { _, context in try await removeNode(try Self.parameter("id", context)) }
        router.put("\(base)/nodes/:id/bootSettings") { request, context in
            try await setBootSettings(try Self.parameter("id", context), request: request)
        }
        router.post("\(base)/nodes/:id/workflows") { request, context in
            try await startWorkflow(try Self.parameter("id", context), request: request)
        }
        router.delete("\(base)/nodes/:id/workflows/active") { _, context in try await cancelWorkflow(try Self.parameter("id", context)) }
        router.get("\(base)/workflows") { _, _ in try await listActiveWorkflows() }
        router.get("\(base)/workflows/graphs") { _, _ in try json(await call(GetTaskGraphLibrary(), service: ServiceName.taskGraphRunner)) }
        router.put("\(base)/workflows/graphs") { request, _ in try await defineGraph(request) }
        router.get("\(base)/workflows/tasks") { _, _ in try json(await call(GetTaskLibrary(), service: ServiceName.taskGraphRunner)) }
        router.put("\(base)/workflows/tasks") { request, _ in try await defineTask(request) }
        router.get("\(base)/workflows/:graphId") { _, context in try await showWorkflow(try Self.parameter("graphId", context)) }
        router.put("\(base)/workflows/:graphId/action") { request, context in
            try await workflowAction(try Self.parameter("graphId", context), request: request)
        }
        router.get("\(base)/skus") { _, _ in try await listSKUs() }
        router.post("\(base)/skus") { request, _ in try await defineSKU(request) }
    }

    // MARK: Nodes

    func listNodes() async throws -> Response {
        try json(await call(ListNodes(), service: ServiceName.registry))
    }

    func showNode(_ idOrMAC: String) async throws -> Response {
        let node = try await call(GetNode(idOrMAC), service: ServiceName.registry)
        let graph = try await call(GetActiveTaskGraph(filter: GraphFilter(target: node.id)), service: ServiceName.taskGraphRunner)
        return try json(
            NodeDetails(node: node, activeGraph: graph.map { ActiveGraph(instanceId: $0.instanceId, name: $0.name, status: $0.status) }))
    }

    /// Removes a node that runs no workflow (a 409 while one is active: cancel it first).
    func removeNode(_ idOrMAC: String) async throws -> Response {
        let node = try await call(GetNode(idOrMAC), service: ServiceName.registry)
        if let graph = try await call(GetActiveTaskGraph(filter: GraphFilter(target: node.id)), service: ServiceName.taskGraphRunner) {
            throw APIError(
                .conflict, name: "ConflictError",
                message: "node \(node.id) runs workflow \(graph.instanceId) (\(graph.name)); cancel it first")
        }
        return try json(await call(RemoveNode(node.id), service: ServiceName.registry))
    }

    func setBootSettings(_ idOrMAC: String, request: Request) async throws -> Response {
        let settings = try await decodeBody(BootSettings.self, from: request)
        if let profile = settings.profile, !TemplateLibrary.isValidName(profile) {
            throw APIError.badRequest("profile must be a template name (a plain file name), not '\(profile.prefix(64))'")
        }
        let node = try await call(GetNode(idOrMAC), service: ServiceName.registry)
        return try json(await call(SetBootSettings(nodeId: node.id, bootSettings: settings), service: ServiceName.registry))
    }

    // MARK: Workflows

    struct WorkflowRequest: Decodable {
        var name: String
        var options: [String: JSONValue]?
    }

    /// With an `Idempotency-Key` header, a client that retries after a lost response gets the
    /// graph its first request started (a 201 again), not a 400 for the node's active graph.
    func startWorkflow(_ idOrMAC: String, request: Request) async throws -> Response {
        let body = try await decodeBody(WorkflowRequest.self, from: request)
        guard !body.name.trimmingCharacters(in: .whitespaces).isEmpty else { throw APIError.badRequest("name must name a graph") }
        let key = request.headers.first { $0.name.canonicalName == "idempotency-key" }?.value
        if let key, !Self.isValidIdempotencyKey(key) {
            throw APIError.badRequest("Idempotency-Key must be 1 to 255 visible ASCII characters")
        }
        let node = try await call(GetNode(idOrMAC), service: ServiceName.registry)
        let graph = try await call(
            RunTaskGraph(name: body.name, options: body.options, target: node.id, idempotencyKey: key),
            service: ServiceName.taskGraphRunner)
        return try json(graph, status: .created)
    }

    static func isValidIdempotencyKey(_ key: String) -> Bool {
        (1...255).contains(key.utf8.count) && key.utf8.allSatisfy { (0x21...0x7E).contains($0) }
    }

    func listActiveWorkflows() async throws -> Response {
        try json(await call(GetActiveTaskGraphs(), service: ServiceName.taskGraphRunner))
    }

    /// Defines (or redefines) a graph, validated by the task-graph runner; answers with its name.
    func defineGraph(_ request: Request) async throws -> Response {
        let definition = try await decodeBody(GraphDefinition.self, from: request)
        let name = try await call(DefineTaskGraph(definition: definition), service: ServiceName.taskGraphRunner)
        return try json(["injectableName": name], status: .created)
    }

    func defineTask(_ request: Request) async throws -> Response {
        let definition = try await decodeBody(TaskDefinition.self, from: request)
        let name = try await call(DefineTask(definition: definition), service: ServiceName.taskGraphRunner)
        return try json(["injectableName": name], status: .created)
    }

    struct WorkflowAction: Decodable {
        var command: String
    }

    /// RackHD's `PUT /workflows/:id/action` `{"command": "cancel" | "pause" | "resume"}`.
    func workflowAction(_ graphId: String, request: Request) async throws -> Response {
        let action = try await decodeBody(WorkflowAction.self, from: request)
        let filter = GraphFilter(instanceId: graphId)
        switch action.command {
        case "cancel":
            guard try await call(CancelTaskGraph(filter: filter), service: ServiceName.taskGraphRunner) != nil else {
                throw APIError.notFound("workflow \(graphId) is not active")
            }
        case "pause": _ = try await call(PauseTaskGraph(filter: filter), service: ServiceName.taskGraphRunner)
        case "resume": _ = try await call(ResumeTaskGraph(filter: filter), service: ServiceName.taskGraphRunner)
        default: throw APIError.badRequest("command must be cancel, pause or resume, not '\(action.command.prefix(64))'")
        }
        return try json(["instanceId": graphId, "command": action.command], status: .accepted)
    }

    func showWorkflow(_ graphId: String) async throws -> Response {
        try json(await call(GetTaskGraphProperties(filter: GraphFilter(instanceId: graphId)), service: ServiceName.taskGraphRunner))
    }

    func cancelWorkflow(_ idOrMAC: String) async throws -> Response {
        let node = try await call(GetNode(idOrMAC), service: ServiceName.registry)
        guard let cancelled = try await call(CancelTaskGraph(filter: GraphFilter(target: node.id)), service: ServiceName.taskGraphRunner)
        else {
            throw APIError.notFound("node \(node.id) has no active workflow")
        }
        return try json(["instanceId": cancelled])
    }

    // MARK: SKUs

    func listSKUs() async throws -> Response {
        try json(await call(ListSKUs(), service: ServiceName.registry))
    }

    func defineSKU(_ request: Request) async throws -> Response {
        let definition = try await decodeBody(SKUDefinition.self, from: request)
        return try json(await call(DefineSKU(definition), service: ServiceName.registry), status: .created)
    }

    // MARK: Plumbing

    /// A path parameter, percent-decoded (`52%3A54%3A…` is a MAC).
    static func parameter(_ name: String, _ context: BasicRequestContext) throws -> String {
        guard let raw = context.parameters.get(name), let decoded = raw.removingPercentEncoding, !decoded.isEmpty else {
            throw APIError.badRequest("the path's \(name) is missing or malformed")
        }
        return decoded
    }

    /// Failures go to ``APIErrorMiddleware`` as they are: it answers them, and logs what it conceals.
    private func call<Request: BusRequest>(_ request: Request, service: String) async throws(ServiceCallFailure) -> Request.Reply {
        try await bus.request(request, timeout: configuration.serviceCallTimeout, service: service)
    }

    private func decodeBody<Body: Decodable>(_ type: Body.Type, from request: Request) async throws -> Body {
        var request = request
        let buffer = try await request.collectBody(upTo: configuration.maxBodyBytes)
        guard buffer.readableBytes > 0 else { throw APIError.badRequest("a JSON body is required") }
        do {
            return try JSONDecoder().decode(type, from: Data(buffer.readableBytesView))
        } catch {
            throw APIError.badRequest("the body is not valid JSON of the expected shape: \(Self.describe(error))")
        }
    }

    /// A decoding error in one line: what was wrong and where.
    static func describe(_ error: any Error) -> String {
        guard let decoding = error as? DecodingError else { return String(describing: error) }
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.isEmpty ? "" : " at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        }
        switch decoding {
        case .keyNotFound(let key, let context): return "\(key.stringValue) is missing\(path(context))"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return context.debugDescription + path(context)
        @unknown default: return String(describing: error)
        }
    }

    private func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}

/// The active graph of a node, as `GET /nodes/:id` shows it.
struct ActiveGraph: Codable, Sendable, Equatable {
    var instanceId: String
    var name: String
    var status: String
}

/// A node with its active graph (null when none).
struct NodeDetails: Encodable {
    var node: Node
    var activeGraph: ActiveGraph?

    private enum Keys: String, CodingKey { case activeGraph }

    func encode(to encoder: any Encoder) throws {
        try node.encode(to: encoder)
        var container = encoder.container(keyedBy: Keys.self)
        if let activeGraph {
            try container.encode(activeGraph, forKey: .activeGraph)
        } else {
            try container.encodeNil(forKey: .activeGraph)
        }
    }
}
