import BusCore
import Hummingbird
import Logging
import Metrics
import NodeProtocol

/// Whom a boot request is attributed to in `http.response.<nodeId>`. Pure.
public enum ResponseEventSubject: Sendable, Equatable {
    /// The first valid MAC of the `macs` query parameter.
    case mac(String)
    /// The `nodeId` query parameter.
    case nodeId(String)
    /// Neither: the client's address decides (through its DHCP lease), else `external`.
    case clientAddress

    /// From the query as received; a query that does not parse names nobody.
    public static func from(rawQuery: String?) -> ResponseEventSubject {
        guard let query = try? QueryParameters(rawQuery) else { return .clientAddress }
        if let mac = query.list("macs").lazy.compactMap(NodeIdentity.normalizedMAC).first { return .mac(mac) }
        // A node id is one routing-key word.
        if let nodeId = query.first("nodeId"), !nodeId.isEmpty, nodeId.utf8.count <= 128,
            nodeId.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
        {
            return .nodeId(nodeId)
        }
        return .clientAddress
    }
}

/// A response waiting to be announced.
struct AnsweredRequest: Sendable {
    var event: HTTPResponseEvent
    var subject: ResponseEventSubject
}

/// Announces answered boot requests on the bus, off the request path: the middleware hands each
/// one over and returns; a consumer attributes it to a node (which may take a registry or DHCP
/// lookup) and publishes `http.response.<nodeId>` on `on.events` and `http.response` on `on.http`.
// Beyond a bounded backlog announcements are dropped and counted: a slow broker must never hold up a boot.
final class ResponseEventPublisher: Sendable {
    private let bus: MessageBus
    private let resolver: NodeAddressResolver
    private let logger: Logger
    private let stream: AsyncStream<AnsweredRequest>
    private let continuation: AsyncStream<AnsweredRequest>.Continuation
    private let dropped = Counter(label: "rackbus_http_response_events_dropped_total")
    /// Announcements attributed and published at once.
    private static let concurrency = 32

    init(bus: MessageBus, resolver: NodeAddressResolver, logger: Logger, backlog: Int = 10_000) {
        self.bus = bus
        self.resolver = resolver
        self.logger = logger
        (stream, continuation) = AsyncStream.makeStream(of: AnsweredRequest.self, bufferingPolicy: .bufferingOldest(backlog))
    }

    func record(_ answered: AnsweredRequest) {
        if case .dropped(_) = continuation.yield(answered) { dropped.increment() }
    }

    /// Ends ``run()`` once what is queued is published.
    func finish() { continuation.finish() }

    func run() async {
        await withTaskGroup(of: Void.self) { group in
            var inFlight = 0
            for await answered in stream {
                if inFlight >= Self.concurrency {
                    await group.next()
                    inFlight -= 1
                }
                group.addTask { await self.publish(answered) }
                inFlight += 1
            }
        }
    }

    private func publish(_ answered: AnsweredRequest) async {
        let nodeId = await attribute(answered)
        do {
            try await bus.publish(answered.event, to: .events, routingKey: HTTPResponseEvent.routingKey(nodeId: nodeId))
            try await bus.publish(answered.event, to: .http, routingKey: "http.response")
        } catch {
            logger.warning(
                "could not publish an http.response event", metadata: ["nodeId": "\(nodeId ?? NodeIdentity.external)", "error": "\(error)"])
        }
    }

    private func attribute(_ answered: AnsweredRequest) async -> String? {
        switch answered.subject {
        // A booting machine asks several times within seconds: the resolver caches by MAC.
        case .mac(let mac): return await resolver.nodeId(forMAC: mac)
        case .nodeId(let nodeId): return nodeId
        case .clientAddress:
            guard !answered.event.address.isEmpty else { return nil }
            return await resolver.nodeId(forAddress: answered.event.address)
        }
    }
}

/// Hands every boot request's outcome (status, duration) to the ``ResponseEventPublisher``.
struct ResponseEventMiddleware: RouterMiddleware {
    typealias Context = BootRequestContext
    let publisher: ResponseEventPublisher

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        do {
            let response = try await next(request, context)
            record(request, context: context, status: response.status.code, started: started)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            record(request, context: context, status: status, started: started)
            throw error
        }
    }

    private func record(_ request: Request, context: Context, status: Int, started: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - started
        let milliseconds = Int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)
        let event = HTTPResponseEvent(
            address: context.clientAddress ?? "", method: request.method.rawValue, url: request.uri.string, statusCode: status,
            time: milliseconds)
        publisher.record(AnsweredRequest(event: event, subject: .from(rawQuery: request.uri.query)))
    }
}
