import BusCore
import Glibc
import Logging
import NIOCore
import NIOPosix
import NodeProtocol
import ServiceLifecycle
import Synchronization

/// TFTPService: a read-only TFTP server (RFC 1350, with the option extensions of RFC 2347, 2348,
/// 2349 and 7440) over one root folder, with built-in iPXE files and templates, that announces
/// each transfer on `on.events`. A `Service`: put it after the `MessageBus` in a `ServiceGroup`.
public final class TFTPService: Service, Sendable {
    public let configuration: TFTPConfiguration
    private let bus: MessageBus
    private let logger: Logger
    private let metrics = TFTPMetrics()
    private let readiness = OneShotSignal()
    private let port = Mutex<Int?>(nil)
    private let events: AsyncStream<TransferEvent>
    private let eventSink: AsyncStream<TransferEvent>.Continuation

    public init(bus: MessageBus, configuration: TFTPConfiguration, logger: Logger = Logger(label: "rackbus.tftp")) {
        self.bus = bus
        self.configuration = configuration
        self.logger = logger
        // Events wait here for the publisher, so a slow or absent broker never holds up a transfer;
        // beyond 10,000 waiting they are dropped and counted.
        (events, eventSink) = AsyncStream.makeStream(of: TransferEvent.self, bufferingPolicy: .bufferingOldest(10_000))
    }

    /// The UDP port the server listens on, once ready (the chosen one when configured with 0).
    public var boundPort: Int? { port.withLock { $0 } }

    /// Counts since start.
    public var statistics: TFTPStatistics { metrics.snapshot }

    /// Returns once the socket is bound (``boundPort`` is set), or when the waiting task is cancelled.
    public func waitUntilReady() async {
        await readiness.wait()
    }

    public func run() async throws {
        let configuration = self.configuration
        let threadPool = NIOThreadPool.singleton
        let root: String
        do {
            root = try await threadPool.runIfActive { try TFTPServer.prepareRoot(configuration.root) }
        } catch {
            readiness.releaseWaiters()
            throw error
        }
        let server = TFTPServer(
            configuration: configuration, root: root, metrics: metrics, events: eventSink, logger: logger,
            group: MultiThreadedEventLoopGroup.singleton, threadPool: threadPool)
        let listener: any Channel
        do {
            listener = try await server.bind()
        } catch {
            readiness.releaseWaiters()
            throw error
        }
        let bound = listener.localAddress?.port
        port.withLock { $0 = bound }
        logger.notice(
            "serving TFTP",
            metadata: [
                "tftp.listen": "\(configuration.listenHost):\(bound ?? configuration.listenPort)", "tftp.root": "\(root)",
                "tftp.ipxe": "\(configuration.ipxeDirectory ?? "-")",
            ])
        readiness.signal()
        let resolver = NodeAddressResolver(bus: bus)
        await withDiscardingTaskGroup { group in
            group.addTask { await self.publishEvents(resolver: resolver) }
            try? await gracefulShutdown()
            try? await listener.close()
            server.closeTransfers()
            eventSink.finish()
            group.cancelAll()
        }
    }

    private func publishEvents(resolver: NodeAddressResolver) async {
        for await event in events {
            let nodeId = await resolver.nodeId(forAddress: event.clientAddress)
            do {
                switch event {
                case .success(let body):
                    try await bus.publish(body, to: .events, routingKey: TFTPSuccessEvent.routingKey(nodeId: nodeId))
                case .failure(let body):
                    try await bus.publish(body, to: .events, routingKey: TFTPFailureEvent.routingKey(nodeId: nodeId))
                }
            } catch {
                logger.warning("could not publish a TFTP event", metadata: ["tftp.client": "\(event.clientAddress)", "error": "\(error)"])
            }
        }
    }
}

enum TransferEvent: Sendable {
    case success(TFTPSuccessEvent)
    case failure(TFTPFailureEvent)

    var clientAddress: String {
        switch self {
        case .success(let body): body.remoteAddress
        case .failure(let body): body.remoteAddress
        }
    }
}

/// The running server: the listening socket's decisions, admission, and the transfers.
final class TFTPServer: Sendable {
    let configuration: TFTPConfiguration
    private let resolver: FileResolver
    private let metrics: TFTPMetrics
    private let events: AsyncStream<TransferEvent>.Continuation
    private let logger: Logger
    private let group: any EventLoopGroup
    private let threadPool: NIOThreadPool
    private let fileIO: NonBlockingFileIO
    private let active = Atomic<Int>(0)
    private let transfers = Mutex<[ObjectIdentifier: any Channel]>([:])

    init(
        configuration: TFTPConfiguration, root: String, metrics: TFTPMetrics, events: AsyncStream<TransferEvent>.Continuation,
        logger: Logger, group: any EventLoopGroup, threadPool: NIOThreadPool
    ) {
        self.configuration = configuration
        resolver = FileResolver(
            root: root, ipxeDirectory: configuration.ipxeDirectory, bootURL: configuration.bootURL, serverAddress: configuration.serverAddress)
        self.metrics = metrics
        self.events = events
        self.logger = logger
        self.group = group
        self.threadPool = threadPool
        fileIO = NonBlockingFileIO(threadPool: threadPool)
    }

    /// Creates the root if missing and returns it resolved (realpath). Runs on the thread pool.
    static func prepareRoot(_ path: String) throws -> String {
        var built = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            built += "/" + component
            if mkdir(built, 0o755) != 0, errno != EEXIST {
                throw TFTPConfigurationError("cannot create the TFTP root \(path): \(String(cString: strerror(errno)))")
            }
        }
        guard let resolved = realpath(path, nil) else {
            throw TFTPConfigurationError("cannot resolve the TFTP root \(path): \(String(cString: strerror(errno)))")
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    func bind() async throws -> any Channel {
        try await DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            // The destination address of each request, so that its transfer answers from it.
            .channelOption(.receivePacketInfo, value: true)
            // Requests can be long (options, long names); a datagram is at most 64 KiB.
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65536))
            // A burst of requests (a rack powering on) queues in the kernel instead of being lost.
            .channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ListenerHandler(server: self))
                }
            }
            .bind(host: configuration.listenHost, port: configuration.listenPort)
            .get()
    }

    func closeTransfers() {
        let open = transfers.withLock { $0 }
        for channel in open.values { channel.close(promise: nil) }
    }

    /// Called on the listener's event loop for every datagram.
    func received(_ envelope: AddressedEnvelope<ByteBuffer>, listener: any Channel) {
        let peer = envelope.remoteAddress
        switch RequestDecision.decide(envelope.data) {
        case .drop(let label):
            metrics.invalidPacket(label)
        case .refuse(let code, let message, let label, let file):
            if file == nil || label == "unknown_mode" { metrics.invalidPacket(label) }
            sendError(code, message, to: peer, on: listener)
            if let file { refused(file: file, peer: peer, result: label, reason: message) }
        case .read(let request):
            guard admit() else {
                sendError(.notDefined, "server busy, try again later", to: peer, on: listener)
                refused(file: request.displayName, peer: peer, result: "busy", reason: "server busy")
                return
            }
            let localHost = localHost(for: envelope)
            Task { await self.start(request, peer: peer, localHost: localHost, listener: listener) }
        }
    }

    /// The address the transfer's socket binds to: the one the request came to, when the
    /// listener is bound to all addresses, so the client hears back from the address it asked.
    private func localHost(for envelope: AddressedEnvelope<ByteBuffer>) -> String {
        guard configuration.listenHost == "0.0.0.0", let destination = envelope.metadata?.packetInfo?.destinationAddress,
            let address = destination.ipAddress
        else { return configuration.listenHost }
        return address
    }

    private func admit() -> Bool {
        var current = active.load(ordering: .relaxed)
        while current < configuration.maximumTransfers {
            let (exchanged, original) = active.compareExchange(expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged {
                metrics.activeChanged(current + 1)
                return true
            }
            current = original
        }
        return false
    }

    private func release() {
        let now = active.subtract(1, ordering: .relaxed).newValue
        metrics.activeChanged(now)
    }

    private func sendError(_ code: TFTPErrorCode, _ message: String, to peer: SocketAddress, on channel: any Channel) {
        let packet = TFTPPacket.error(code, message).encoded(allocator: channel.allocator)
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: peer, data: packet), promise: nil)
    }

    private func refused(file: String, peer: SocketAddress, result: String, reason: String) {
        metrics.transferEnded(result: result, bytes: 0, retransmittedBlocks: 0)
        emit(.failure(TFTPFailureEvent(file: file, remoteAddress: peer.ipAddress ?? "", remotePort: peer.port ?? 0, reason: reason)))
    }

    private func emit(_ event: TransferEvent) {
        if case .dropped = events.yield(event) { metrics.eventDropped() }
    }

    /// Resolves the file on the thread pool, then opens the transfer's own socket.
    private func start(_ request: ReadRequest, peer: SocketAddress, localHost: String, listener: any Channel) async {
        let resolver = self.resolver
        let clientAddress = peer.ipAddress ?? ""
        let resolution: Resolution
        do {
            resolution = try await threadPool.runIfActive {
                resolver.resolve(request.components, mode: request.mode, clientAddress: clientAddress)
            }
        } catch {
            resolution = .refused(.notDefined, "server shutting down")
        }
        let content: TransferContent
        switch resolution {
        case .refused(let code, let message):
            release()
            sendError(code, message, to: peer, on: listener)
            let label =
                switch code {
                case .fileNotFound: "not_found"
                case .accessViolation: "access_violation"
                default: "error"
                }
            refused(file: request.displayName, peer: peer, result: label, reason: message)
            logger.debug("refused a read request", metadata: ["tftp.file": "\(request.displayName)", "tftp.client": "\(peer)", "tftp.reason": "\(message)"])
            return
        case .content(let found):
            content = found
        }
        let negotiated = OptionNegotiation.negotiate(
            request.options, transferSize: content.wireSize, maximumWindowSize: configuration.maximumWindowSize)
        let timeout: TimeAmount =
            if let seconds = negotiated.timeoutSeconds { .seconds(Int64(seconds)) } else {
                .nanoseconds(configuration.timeout.components.seconds * 1_000_000_000 + configuration.timeout.components.attoseconds / 1_000_000_000)
            }
        let handedOver = Atomic<Bool>(false)
        let channelID = Mutex<ObjectIdentifier?>(nil)
        let file = request.displayName
        let settings = TransferSettings(
            peer: peer, content: content, mode: request.mode, negotiated: negotiated, timeout: timeout, retries: configuration.retries,
            fileIO: fileIO, countInvalidPacket: { [metrics] label in metrics.invalidPacket(label) },
            finished: { [weak self] outcome in
                guard let self else { return }
                if let id = channelID.withLock({ $0 }) { _ = self.transfers.withLock { $0.removeValue(forKey: id) } }
                self.finished(file: file, peer: peer, size: content.wireSize, outcome: outcome)
            })
        do {
            let channel = try await DatagramBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        handedOver.store(true, ordering: .relaxed)
                        try channel.pipeline.syncOperations.addHandler(TransferHandler(settings: settings))
                    }
                }
                .bind(host: localHost, port: 0)
                .get()
            let id = ObjectIdentifier(channel)
            channelID.withLock { $0 = id }
            transfers.withLock { $0[id] = channel }
            // A transfer that ended before it was registered (a closed channel) must not stay listed.
            if !channel.isActive { _ = transfers.withLock { $0.removeValue(forKey: id) } }
        } catch {
            logger.warning("could not open a transfer socket", metadata: ["tftp.file": "\(file)", "error": "\(error)"])
            if !handedOver.load(ordering: .relaxed) {
                if case .file(let descriptor, _, _) = content { close(descriptor) }
                release()
                sendError(.notDefined, "server error", to: peer, on: listener)
                refused(file: file, peer: peer, result: "error", reason: "could not open a transfer socket")
            }
        }
    }

    private func finished(file: String, peer: SocketAddress, size: Int, outcome: TransferOutcome) {
        release()
        let address = peer.ipAddress ?? ""
        let remotePort = peer.port ?? 0
        switch outcome.result {
        case .success:
            metrics.transferEnded(result: "success", bytes: outcome.bytesSent, retransmittedBlocks: outcome.retransmittedBlocks)
            let milliseconds = Int(outcome.duration.components.seconds * 1000 + outcome.duration.components.attoseconds / 1_000_000_000_000_000)
            emit(.success(TFTPSuccessEvent(file: file, remoteAddress: address, remotePort: remotePort, size: size, time: milliseconds)))
        case .failure(let failure):
            metrics.transferEnded(result: failure.metricLabel, bytes: outcome.bytesSent, retransmittedBlocks: outcome.retransmittedBlocks)
            emit(.failure(TFTPFailureEvent(file: file, remoteAddress: address, remotePort: remotePort, reason: failure.reason)))
            logger.info("a transfer failed", metadata: ["tftp.file": "\(file)", "tftp.client": "\(peer)", "tftp.reason": "\(failure.reason)"])
        }
    }
}

/// The listening socket's only handler: hands each datagram to the server.
final class ListenerHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let server: TFTPServer

    init(server: TFTPServer) {
        self.server = server
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        server.received(unwrapInboundIn(data), listener: context.channel)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // An ICMP error for an earlier reply must not close the listening socket.
    }
}
