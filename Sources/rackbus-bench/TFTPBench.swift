import ArgumentParser
import BusCore
import Foundation
import Glibc
import Logging
import NIOCore
import NIOPosix
import TFTPService

struct TFTPBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tftp",
        abstract: """
            TFTP read throughput against --server HOST:PORT: one big file at windowsize 1, 8, 32 (MB/s), then concurrent \
            transfers of a small file (transfers/s), with CPU per MB. --serve DIR runs RackBus's TFTP server instead, until \
            interrupted (scripts/bench-tftp uses both).
            """)

    @Option(help: "The TFTP server to measure, HOST:PORT") var server: String?
    @Option(help: "The server's process id: its CPU time (children included) is reported per MB") var serverPid: Int32?
    @Option(help: "A name for the server in the output") var label = "server"
    @Option(help: "The big file's name on the server") var bigFile = "bench-32m.bin"
    @Option(help: "The small file's name on the server") var smallFile = "bench-1m.bin"
    @Option(help: "Block size asked for") var blksize = 1468
    @Option(help: "Window sizes asked for, comma-separated") var windows = "1,8,32"
    @Option(help: "Concurrent transfers of the small file") var concurrency = 50
    @Option(help: "Rounds of concurrent transfers") var rounds = 4
    @Option(help: "Window size for the concurrent case") var concurrentWindow = 1

    @Option(help: "Serve this folder with RackBus's TFTP server (in this process) instead of measuring") var serve: String?
    @Option(help: "Where --serve listens, HOST:PORT") var listen = "127.0.0.1:6969"
    @Flag(help: "With --serve: write bench-32m.bin and bench-1m.bin into the folder first") var createFiles = false

    func run() async throws {
        if let serve {
            try await serveRackBus(directory: serve)
            return
        }
        guard let server, let colon = server.lastIndex(of: ":"), let port = Int(server[server.index(after: colon)...]) else {
            throw ValidationError("--server HOST:PORT is required")
        }
        let address = try SocketAddress(ipAddress: String(server[..<colon]), port: port)
        let client = BenchTFTPClient(group: MultiThreadedEventLoopGroup.singleton)
        // Warm-up: sockets, caches, the server's first fork.
        _ = try await client.download(bigFile, from: address, blockSize: blksize, windowSize: 8)
        for window in windows.split(separator: ",").compactMap({ Int($0) }) {
            let cpu = CPUMeter(serverPid: serverPid)
            let started = ContinuousClock.now
            let result = try await client.download(bigFile, from: address, blockSize: blksize, windowSize: window)
            let elapsed = ContinuousClock.now - started
            let megabytes = Double(result.bytes) / 1_048_576
            var extra = cpu.figures(megabytes: megabytes)
            extra["server"] = "\"\(label)\""
            extra["mb_per_s"] = String(format: "%.1f", megabytes / (milliseconds(elapsed) / 1000))
            extra["blksize"] = "\(result.blockSize)"
            extra["windowsize_asked"] = "\(window)"
            extra["windowsize"] = "\(result.windowSize)"
            extra["bytes"] = "\(result.bytes)"
            Figures(caseName: "tftp-big-w\(window)", count: 1, elapsed: elapsed, latencies: [elapsed], extra: extra).printLine()
        }
        let cpu = CPUMeter(serverPid: serverPid)
        let started = ContinuousClock.now
        var latencies: [Duration] = []
        var bytes = 0
        for _ in 0..<rounds {
            try await withThrowingTaskGroup(of: (Duration, Int).self) { group in
                for _ in 0..<concurrency {
                    group.addTask {
                        let begin = ContinuousClock.now
                        let result = try await client.download(smallFile, from: address, blockSize: blksize, windowSize: concurrentWindow)
                        return (ContinuousClock.now - begin, result.bytes)
                    }
                }
                for try await (latency, count) in group {
                    latencies.append(latency)
                    bytes += count
                }
            }
        }
        let elapsed = ContinuousClock.now - started
        var extra = cpu.figures(megabytes: Double(bytes) / 1_048_576)
        extra["server"] = "\"\(label)\""
        extra["concurrency"] = "\(concurrency)"
        extra["windowsize_asked"] = "\(concurrentWindow)"
        extra["mb_per_s"] = String(format: "%.1f", Double(bytes) / 1_048_576 / (milliseconds(elapsed) / 1000))
        Figures(caseName: "tftp-concurrent", count: latencies.count, elapsed: elapsed, latencies: latencies, extra: extra).printLine()
    }

    private func serveRackBus(directory: String) async throws {
        guard let (host, port) = parseListen(listen) else { throw ValidationError("--listen HOST:PORT") }
        if createFiles {
            try await NIOThreadPool.singleton.runIfActive {
                for (name, size) in [("bench-32m.bin", 32 << 20), ("bench-1m.bin", 1 << 20)] {
                    var bytes = [UInt8](repeating: 0, count: size)
                    for index in bytes.indices { bytes[index] = UInt8(truncatingIfNeeded: index &* 2_654_435_761 >> 7) }
                    try Data(bytes).write(to: URL(fileURLWithPath: directory + "/" + name))
                }
            }
        }
        let configuration = TFTPConfiguration(listenHost: host, listenPort: port, root: directory, ipxeDirectory: nil)
        try await MessageBus.withBus(configuration: try benchConfiguration("rackbus-bench-tftp"), logger: benchLogger) { bus in
            let service = TFTPService(bus: bus, configuration: configuration, logger: benchLogger)
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await service.run() }
                await service.waitUntilReady()
                // Unbuffered, so the script sees it at once.
                FileHandle.standardOutput.write(Data("{\"serving\": \"\(host):\(service.boundPort ?? port)\", \"pid\": \(getpid())}\n".utf8))
                // Until SIGINT or SIGTERM.
                let (signals, continuation) = AsyncStream.makeStream(of: Int32.self)
                var sources: [any DispatchSourceSignal] = []
                for signalNumber in [SIGINT, SIGTERM] {
                    signal(signalNumber, SIG_IGN)
                    let source = DispatchSource.makeSignalSource(signal: signalNumber)
                    source.setEventHandler { continuation.yield(signalNumber) }
                    source.resume()
                    sources.append(source)
                }
                for await _ in signals { break }
                for source in sources { source.cancel() }
                group.cancelAll()
            }
        }
    }

    private func parseListen(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else { return nil }
        return (String(text[..<colon]), port)
    }
}

/// CPU time of this process (getrusage) and of the server's process with its reaped children
/// (/proc/PID/stat: utime, stime, cutime, cstime), from creation to `figures`.
struct CPUMeter {
    let serverPid: Int32?
    let clientStart: Double
    let serverStart: Double?

    init(serverPid: Int32?) {
        self.serverPid = serverPid
        clientStart = CPUTime.ownSeconds
        serverStart = serverPid.flatMap(CPUTime.seconds(ofProcess:))
    }

    func figures(megabytes: Double) -> [String: String] {
        var figures = ["client_cpu_ms_per_mb": String(format: "%.2f", (CPUTime.ownSeconds - clientStart) * 1000 / megabytes)]
        if let serverPid, let serverStart, let now = CPUTime.seconds(ofProcess: serverPid) {
            figures["server_cpu_ms_per_mb"] = String(format: "%.2f", (now - serverStart) * 1000 / megabytes)
        }
        return figures
    }
}

struct BenchDownload: Sendable {
    var bytes: Int
    var blockSize: Int
    var windowSize: Int
}

struct BenchTFTPError: Error, CustomStringConvertible {
    let description: String
}

/// A TFTP reader that runs on an event loop (no task hop per packet, so it measures the server):
/// asks for blksize, windowsize and tsize, acknowledges every window, and falls back to
/// windowsize 1 when the OACK has no windowsize (tftpd-hpa 5.2 has none).
struct BenchTFTPClient: Sendable {
    let group: any EventLoopGroup

    func download(_ file: String, from server: SocketAddress, blockSize: Int, windowSize: Int) async throws -> BenchDownload {
        let promise = group.next().makePromise(of: BenchDownload.self)
        let channel = try await DatagramBootstrap(group: promise.futureResult.eventLoop)
            .channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65536))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        BenchClientHandler(file: file, server: server, blockSize: blockSize, windowSize: windowSize, promise: promise))
                }
            }
            .bind(host: server.ipAddress == "127.0.0.1" ? "127.0.0.1" : "0.0.0.0", port: 0).get()
        defer { channel.close(promise: nil) }
        return try await promise.futureResult.get()
    }
}

final class BenchClientHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private let file: String
    private let server: SocketAddress
    private let askedBlockSize: Int
    private let askedWindowSize: Int
    private let promise: EventLoopPromise<BenchDownload>
    private var peer: SocketAddress?
    private var blockSize = 512
    private var windowSize = 1
    private var received = 0
    private var bytes = 0
    private var expectedSize: Int?
    private var lastAcknowledgement: ByteBuffer?
    private var timer: Scheduled<Void>?
    private var quietRounds = 0
    private var done = false

    init(file: String, server: SocketAddress, blockSize: Int, windowSize: Int, promise: EventLoopPromise<BenchDownload>) {
        self.file = file
        self.server = server
        askedBlockSize = blockSize
        askedWindowSize = windowSize
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        let request = TFTPPacket.readRequest(
            TFTPRequest(
                fileName: file, mode: "octet",
                options: [
                    TFTPOption("blksize", "\(askedBlockSize)"), TFTPOption("tsize", "0"), TFTPOption("windowsize", "\(askedWindowSize)"),
                ]))
        send(request.encoded(allocator: context.channel.allocator), to: server, context: context)
        armTimer(context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        if peer == nil { peer = envelope.remoteAddress }
        guard envelope.remoteAddress == peer, !done else { return }
        quietRounds = 0
        switch try? TFTPPacket.parse(envelope.data) {
        case .optionAcknowledgement(let options):
            for option in options {
                switch option.name.lowercased() {
                case "blksize": blockSize = Int(option.value) ?? 512
                case "windowsize": windowSize = Int(option.value) ?? 1
                case "tsize": expectedSize = Int(option.value)
                default: break
                }
            }
            acknowledge(0, context: context)
        case .data(let block, let payload):
            guard block == UInt16(truncatingIfNeeded: received + 1) else {
                // RFC 7440: on a gap, acknowledge the last block received in order.
                acknowledge(received, context: context)
                return
            }
            received += 1
            bytes += payload.readableBytes
            if payload.readableBytes < blockSize {
                acknowledge(received, context: context)
                finish(context: context)
            } else if received % windowSize == 0 {
                acknowledge(received, context: context)
            }
        case .error(let code, let message):
            fail(BenchTFTPError(description: "server error \(code): \(message)"), context: context)
        default:
            break
        }
    }

    private func acknowledge(_ block: Int, context: ChannelHandlerContext) {
        let packet = TFTPPacket.acknowledgement(block: UInt16(truncatingIfNeeded: block)).encoded(allocator: context.channel.allocator)
        lastAcknowledgement = packet
        send(packet, to: peer ?? server, context: context)
    }

    private func send(_ packet: ByteBuffer, to address: SocketAddress, context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: address, data: packet)), promise: nil)
    }

    /// Every second without a packet, the last ACK goes again; after 5 quiet seconds the download fails.
    private func armTimer(context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) {
            guard !self.done else { return }
            self.quietRounds += 1
            if self.quietRounds >= 5 {
                self.fail(BenchTFTPError(description: "no answer from \(self.server)"), context: context)
                return
            }
            if let packet = self.lastAcknowledgement, let peer = self.peer { self.send(packet, to: peer, context: context) }
            self.armTimer(context: context)
        }
    }

    private func finish(context: ChannelHandlerContext) {
        done = true
        timer?.cancel()
        if let expectedSize, expectedSize != bytes {
            promise.fail(BenchTFTPError(description: "got \(bytes) bytes, tsize said \(expectedSize)"))
            return
        }
        promise.succeed(BenchDownload(bytes: bytes, blockSize: blockSize, windowSize: windowSize))
    }

    private func fail(_ error: any Error, context: ChannelHandlerContext) {
        done = true
        timer?.cancel()
        promise.fail(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done { fail(BenchTFTPError(description: "socket closed"), context: context) }
    }
}
