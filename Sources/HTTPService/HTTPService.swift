import BusCore
import Hummingbird
import Logging
import NodeProtocol
import ServiceLifecycle
import Synchronization

/// The HTTP service: two Hummingbird applications on their own addresses.
///
/// - The boot application (``HTTPConfiguration/bootListen``, open: firmware cannot authenticate)
///   serves iPXE profiles, templates, the discovery report and the static files under `/common`,
///   and announces every answer as `http.response.<nodeId>`.
/// - The management API (``HTTPConfiguration/apiListen``) is the JSON REST API for people and
///   scripts, behind a bearer token when one is set.
///
/// A `Service`: put it after the `MessageBus` in a `ServiceGroup`. `run()` throws before
/// listening when the configuration would expose the API (a non-loopback address without a token).
public final class HTTPService: Service, Sendable {
    public let configuration: HTTPConfiguration
    private let bus: MessageBus
    private let logger: Logger
    private let readiness = OneShotSignal()
    private let ports = Mutex<(boot: Int?, api: Int?)>((nil, nil))

    public init(bus: MessageBus, configuration: HTTPConfiguration, logger: Logger = Logger(label: "rackbus.http")) {
        self.bus = bus
        self.configuration = configuration
        self.logger = logger
    }

    /// The boot application's bound port, once it listens (the real one when configured with 0).
    public var bootPort: Int? { ports.withLock { $0.boot } }
    /// The management API's bound port, once it listens.
    public var apiPort: Int? { ports.withLock { $0.api } }

    /// Returns once both applications listen; also when starting failed or the waiting task is cancelled.
    public func waitUntilReady() async {
        await readiness.wait()
    }

    public func run() async throws {
        do {
            try configuration.validate()
        } catch {
            logger.critical("refusing to start", metadata: ["reason": "\(error.message)"])
            readiness.releaseWaiters()
            throw error
        }
        let publisher = ResponseEventPublisher(bus: bus, resolver: NodeAddressResolver(bus: bus), logger: logger)
        let boot = Application(
            router: bootRouter(publisher: publisher),
            configuration: ApplicationConfiguration(address: .hostname(configuration.bootListen.host, port: configuration.bootListen.port)),
            onServerRunning: { [self] channel in listening(boot: true, port: channel.localAddress?.port) },
            logger: logger)
        let api = Application(
            router: apiRouter(),
            configuration: ApplicationConfiguration(address: .hostname(configuration.apiListen.host, port: configuration.apiListen.port)),
            onServerRunning: { [self] channel in listening(boot: false, port: channel.localAddress?.port) },
            logger: logger)
        defer {
            publisher.finish()
            readiness.releaseWaiters()
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await publisher.run() }
            // Either application failing (an address in use) stops the other: the service is
            // both or nothing. A graceful shutdown of the enclosing group reaches this one.
            let servers = ServiceGroup(configuration: ServiceGroupConfiguration(services: [boot, api], logger: logger))
            // The servers run in a task of their own so that cancelling `run()` becomes a graceful
            // shutdown (requests in flight are answered) rather than connections cut mid-answer.
            let serving = Task { try await servers.run() }
            try await withTaskCancellationHandler {
                try await serving.value
            } onCancel: {
                Task { await servers.triggerGracefulShutdown() }
            }
            publisher.finish()
            try await group.waitForAll()
        }
    }

    private func listening(boot: Bool, port: Int?) {
        let both = ports.withLock { ports in
            if boot { ports.boot = port } else { ports.api = port }
            return ports.boot != nil && ports.api != nil
        }
        if both {
            logger.notice(
                "serving HTTP",
                metadata: [
                    "http.boot": "\(configuration.bootListen.host):\(bootPort ?? 0)",
                    "http.api": "\(configuration.apiListen.host):\(apiPort ?? 0)",
                    "http.api.token": "\(configuration.apiToken == nil ? "none" : "required")",
                ])
            readiness.signal()
        }
    }

    private func bootRouter(publisher: ResponseEventPublisher) -> Router<BootRequestContext> {
        let router = Router(context: BootRequestContext.self)
        router.add(middleware: ResponseEventMiddleware(publisher: publisher))
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: FileMiddleware(fileProvider: ConfinedFileSystem(root: configuration.staticRoot), urlBasePath: "/common"))
        BootRoutes(
            bus: bus, configuration: configuration, templates: TemplateLibrary(directory: configuration.templatesDirectory), logger: logger
        )
        .add(to: router)
        return router
    }

    private func apiRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: APIErrorMiddleware())
        if let token = configuration.apiToken, !token.isEmpty {
            router.add(middleware: BearerTokenMiddleware(token: token))
        }
        ManagementRoutes(bus: bus, configuration: configuration).add(to: router)
        return router
    }
}
