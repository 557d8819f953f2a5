import BusCore
import Foundation
import Hummingbird
import Logging
import NodeProtocol
import WorkflowProtocol

/// The boot routes: profiles, templates and the discovery report. They gather facts over the bus
/// and leave the choice of script to ``bootDecision(node:unknownNodes:activeTask:)``.
struct BootRoutes: Sendable {
    let bus: MessageBus
    let configuration: HTTPConfiguration
    let templates: TemplateLibrary
    let logger: Logger

    /// How often a newly discovered node's first task is asked for its profile.
    private static let discoveryPollTimeout: Duration = .milliseconds(500)

    func add(to router: Router<BootRequestContext>) {
        for base in ["/api/current", "/api/2.0"] {
            router.get("\(base)/profiles") { request, _ in try await profiles(request) }
        }
        router.get("/api/current/templates/:name") { request, context in
            // Not decodable names no template: 400, like any invalid name.
            try await template(request, name: context.parameters.get("name")?.removingPercentEncoding ?? "")
        }
        router.get("/api/current/catalogs/smbios") { request, _ in try await smbiosReport(request) }
    }

    /// A failed call as the machine gets it; what is concealed from it goes to the log.
    private func answer(_ failure: ServiceCallFailure) -> BootHTTPError {
        let (error, concealedID) = BootHTTPError.concealing(failure)
        if let concealedID {
            logger.error("answered a boot request with a 503", metadata: ["error.id": "\(concealedID)", "error": "\(failure)"])
        } else if case .brokerUnavailable(let reason) = failure {
            logger.warning("answered a boot request with a 503: the broker is unreachable", metadata: ["error": "\(reason)"])
        }
        return error
    }

    // MARK: Profiles

    func profiles(_ request: Request) async throws -> Response {
        let query = try Self.query(of: request)
        let macs: [String]
        let ips: [String]
        do {
            macs = try query.requiredMACs()
            ips = try query.optionalIPs()
        } catch {
            throw BootHTTPError(.badRequest, error.message)
        }
        let node = try await findNode(macs: macs)
        var activeTask = ActiveTaskAnswer.noGraph
        if let node { activeTask = try await activeTaskAnswer(nodeId: node.id) }
        switch bootDecision(node: node, unknownNodes: configuration.unknownNodes, activeTask: activeTask) {
        case .serve(let script):
            return try await serve(script, node: node, macs: macs, ips: ips)
        case .discover:
            let discovered = try await discover(macs: macs)
            let answer = await firstTaskAnswer(nodeId: discovered.id)
            guard case .serve(let script) = bootDecision(node: discovered, unknownNodes: configuration.unknownNodes, activeTask: answer)
            else {
                throw BootHTTPError(.serviceUnavailable, "the node was registered but is still unknown; try again")
            }
            return try await serve(script, node: discovered, macs: macs, ips: ips)
        }
    }

    /// The first registered node that has one of `macs`, in order; nil when none does.
    private func findNode(macs: [String]) async throws -> Node? {
        for mac in macs {
            do {
                return try await bus.request(GetNode(mac), timeout: configuration.serviceCallTimeout, service: ServiceName.registry)
            } catch .remote(let event) where event.status == 404 {
                continue
            } catch {
                throw answer(error)
            }
        }
        return nil
    }

    private func activeTaskAnswer(nodeId: String) async throws -> ActiveTaskAnswer {
        let graph: GraphSummary?
        do {
            graph = try await bus.request(
                GetActiveTaskGraph(filter: GraphFilter(target: nodeId)), timeout: configuration.serviceCallTimeout,
                service: ServiceName.taskGraphRunner)
        } catch {
            throw answer(error)
        }
        guard graph != nil else { return .noGraph }
        return await askTask(nodeId: nodeId, timeout: configuration.taskCallTimeout) ?? .noProfile
    }

    /// The running task's profile and properties, or nil when no task answers with a profile.
    private func askTask(nodeId: String, timeout: Duration) async -> ActiveTaskAnswer? {
        async let properties = try? bus.call(RequestProperties(nodeId: nodeId), timeout: timeout)
        guard let profile = try? await bus.call(RequestProfile(nodeId: nodeId), timeout: timeout) else { return nil }
        return .profile(profile, properties: await properties ?? [:])
    }

    /// Registers the machine and starts the discovery graph for it.
    private func discover(macs: [String]) async throws -> Node {
        let registered: RegisterNode.Registered
        do {
            registered = try await bus.request(
                RegisterNode(macs: macs), timeout: configuration.serviceCallTimeout, service: ServiceName.registry)
        } catch {
            throw answer(error)
        }
        do {
            _ = try await bus.request(
                RunTaskGraph(name: configuration.discoveryGraph, target: registered.node.id), timeout: configuration.serviceCallTimeout,
                service: ServiceName.taskGraphRunner)
            logger.info(
                "discovering a new node", metadata: ["nodeId": "\(registered.node.id)", "graph": "\(configuration.discoveryGraph)"])
        } catch .remote(let event) where event.status == 400 && !registered.created {
            // A second request from a machine whose discovery already runs (its first request
            // timed out, or two NICs asked at once): its graph answers below.
            logger.debug("discovery already runs", metadata: ["nodeId": "\(registered.node.id)", "reason": "\(event.message)"])
        } catch {
            logger.warning(
                "could not start the discovery graph",
                metadata: ["nodeId": "\(registered.node.id)", "graph": "\(configuration.discoveryGraph)", "error": "\(error)"])
            throw answer(error)
        }
        return registered.node
    }

    /// The discovery graph's first task may take a moment to start: ask briefly and repeatedly.
    private func firstTaskAnswer(nodeId: String) async -> ActiveTaskAnswer {
        let deadline = ContinuousClock.now + configuration.discoveryProfileWait
        while ContinuousClock.now < deadline, !Task.isCancelled {
            let remaining = deadline - ContinuousClock.now
            if let answer = await askTask(nodeId: nodeId, timeout: min(Self.discoveryPollTimeout, remaining)) { return answer }
        }
        return .noProfile
    }

    private func serve(_ script: BootScript, node: Node?, macs: [String], ips: [String]) async throws -> Response {
        let values = TemplateValues(
            configuration: configuration, nodeId: node?.id ?? NodeIdentity.nodeId(forMAC: macs[0]) ?? "", macs: macs, ips: ips,
            options: script.options, node: node)
        return try await render(script.template, values: values)
    }

    private func render(_ name: String, values: TemplateValues) async throws -> Response {
        let text: String
        do {
            text = try await templates.render(name, values: values)
        } catch {
            switch error {
            case .invalidName, .notFound: throw BootHTTPError(.notFound, error.description)
            case .unreadable: throw BootHTTPError(.internalServerError, error.description)
            }
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    // MARK: Templates

    func template(_ request: Request, name: String) async throws -> Response {
        guard TemplateLibrary.isValidName(name) else { throw BootHTTPError(.badRequest, TemplateError.invalidName(name).description) }
        let query = try Self.query(of: request)
        let node: Node
        let macs: [String]
        if let nodeId = query.first("nodeId") {
            guard let found = try await lookUp(nodeId) else { throw BootHTTPError(.notFound, "no node \(nodeId.prefix(64))") }
            node = found
            macs = found.identifiers
        } else if !query.list("macs").isEmpty {
            do {
                macs = try query.requiredMACs()
            } catch {
                throw BootHTTPError(.badRequest, error.message)
            }
            guard let found = try await findNode(macs: macs) else {
                throw BootHTTPError(.notFound, "no node has \(macs.joined(separator: ","))")
            }
            node = found
        } else {
            throw BootHTTPError(.badRequest, "nodeId or macs is required")
        }
        // The running task's options when a task runs for the node, else its boot settings'.
        let taskProperties = try? await bus.call(RequestProperties(nodeId: node.id), timeout: configuration.taskCallTimeout)
        let options = taskProperties ?? node.bootSettings?.options ?? [:]
        return try await render(
            name, values: TemplateValues(configuration: configuration, nodeId: node.id, macs: macs, options: options, node: node))
    }

    private func lookUp(_ idOrMAC: String) async throws -> Node? {
        do {
            return try await bus.request(GetNode(idOrMAC), timeout: configuration.serviceCallTimeout, service: ServiceName.registry)
        } catch .remote(let event) where event.status == 404 {
            return nil
        } catch {
            throw answer(error)
        }
    }

    // MARK: The discovery report

    func smbiosReport(_ request: Request) async throws -> Response {
        let query = try Self.query(of: request)
        let macs: [String]
        do {
            macs = try query.requiredMACs()
        } catch {
            throw BootHTTPError(.badRequest, error.message)
        }
        guard let node = try await findNode(macs: macs) else {
            throw BootHTTPError(.notFound, "no node has \(macs.joined(separator: ",")); ask for a profile first")
        }
        do {
            _ = try await bus.request(
                AddCatalog(nodeId: node.id, source: "smbios", data: Self.smbiosCatalog(query, macs: macs)),
                timeout: configuration.serviceCallTimeout, service: ServiceName.registry)
        } catch {
            throw answer(error)
        }
        logger.info("stored the smbios catalog", metadata: ["nodeId": "\(node.id)"])
        return try await render(
            BootTemplateName.catalogStored,
            values: TemplateValues(configuration: configuration, nodeId: node.id, macs: macs, options: [:], node: node))
    }

    /// The catalog a discovery report stores: the reported fields that have a value, and the MACs. Pure.
    static func smbiosCatalog(_ query: QueryParameters, macs: [String]) -> JSONValue {
        var data: [String: JSONValue] = ["macs": .array(macs.map(JSONValue.string))]
        for field in ["manufacturer", "product", "serial", "uuid", "asset", "platform"] {
            if let value = query.first(field)?.trimmingCharacters(in: .whitespaces), !value.isEmpty { data[field] = .string(value) }
        }
        return .object(data)
    }

    static func query(of request: Request) throws -> QueryParameters {
        do {
            return try QueryParameters(request.uri.query)
        } catch {
            throw BootHTTPError(.badRequest, error.description)
        }
    }
}
