import BusCore
import BusTestSupport
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import TFTPService

/// A UDP socket on loopback whose datagrams are awaited with a timeout (NIO underneath: nothing
/// blocks the cooperative pool).
final class TestSocket: Sendable {
    private struct Inbox {
        var queue: [AddressedEnvelope<ByteBuffer>] = []
        var waiter: CheckedContinuation<AddressedEnvelope<ByteBuffer>?, Never>?
        var waiterNumber = 0
    }

    private final class InboxHandler: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let socket: TestSocket
        init(_ socket: TestSocket) { self.socket = socket }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { socket.deliver(unwrapInboundIn(data)) }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {}
    }

    private let inbox = Mutex(Inbox())
    private let channelBox = Mutex<(any Channel)?>(nil)

    var channel: any Channel { channelBox.withLock { $0! } }
    var port: Int { channel.localAddress!.port! }

    static func open() async throws -> TestSocket {
        let socket = TestSocket()
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65536))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(InboxHandler(socket)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        socket.channelBox.withLock { $0 = channel }
        return socket
    }

    fileprivate func deliver(_ envelope: AddressedEnvelope<ByteBuffer>) {
        let waiter = inbox.withLock { inbox -> CheckedContinuation<AddressedEnvelope<ByteBuffer>?, Never>? in
            if let waiter = inbox.waiter {
                inbox.waiter = nil
                return waiter
            }
            inbox.queue.append(envelope)
            return nil
        }
        waiter?.resume(returning: envelope)
    }

    func send(_ bytes: ByteBuffer, to address: SocketAddress) async throws {
        try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: bytes))
    }

    func send(_ packet: TFTPPacket, to address: SocketAddress) async throws {
        try await send(packet.encoded(), to: address)
    }

    /// The next datagram, or nil when none comes within `timeout`.
    func receive(timeout: Duration = .seconds(3)) async -> AddressedEnvelope<ByteBuffer>? {
        let channel = self.channel
        return await withCheckedContinuation { continuation in
            let (ready, number) = inbox.withLock { inbox -> (AddressedEnvelope<ByteBuffer>?, Int) in
                if !inbox.queue.isEmpty { return (inbox.queue.removeFirst(), 0) }
                inbox.waiter = continuation
                inbox.waiterNumber += 1
                return (nil, inbox.waiterNumber)
            }
            if let ready {
                continuation.resume(returning: ready)
                return
            }
            let nanoseconds = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
            channel.eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) {
                let expired = self.inbox.withLock { inbox -> CheckedContinuation<AddressedEnvelope<ByteBuffer>?, Never>? in
                    guard inbox.waiterNumber == number, let waiter = inbox.waiter else { return nil }
                    inbox.waiter = nil
                    return waiter
                }
                expired?.resume(returning: nil)
            }
        }
    }

    /// Everything that arrives within `duration`.
    func drain(for duration: Duration) async -> [AddressedEnvelope<ByteBuffer>] {
        let deadline = ContinuousClock.now + duration
        var received: [AddressedEnvelope<ByteBuffer>] = []
        while ContinuousClock.now < deadline {
            if let envelope = await receive(timeout: deadline - ContinuousClock.now) { received.append(envelope) }
        }
        return received
    }

    func close() async {
        try? await channel.close()
    }
}

/// What a download saw.
struct Download: Sendable {
    var data: [UInt8] = []
    var optionAcknowledgement: [TFTPOption]?
    var error: (code: UInt16, message: String)?
    /// The port the answers came from.
    var serverPort: Int?
    /// Every DATA packet's block number, duplicates included.
    var blocksReceived: [UInt16] = []
    var completed = false

    var optionValues: [String: String] {
        Dictionary((optionAcknowledgement ?? []).map { ($0.name.lowercased(), $0.value) }, uniquingKeysWith: { first, _ in first })
    }
}

/// A small TFTP reader for the tests: RFC 1350 with blksize and windowsize, acknowledging each
/// window (or, on a gap or duplicate, the last block received in order, as RFC 7440 asks).
/// `skipAcknowledgementOf` leaves the ACK of those blocks out once, as if it were lost.
func download(
    _ file: String, from serverPort: Int, mode: String = "octet", options: [TFTPOption] = [], skipAcknowledgementOf: Set<Int> = [],
    timeout: Duration = .seconds(5)
) async throws -> Download {
    let socket = try await TestSocket.open()
    let server = try SocketAddress(ipAddress: "127.0.0.1", port: serverPort)
    var result = Download()
    var skipped = Set<Int>()
    var blockSize = 512
    var windowSize = 1
    var received = 0
    var peer: SocketAddress?
    try await socket.send(.readRequest(TFTPRequest(fileName: file, mode: mode, options: options)), to: server)
    func acknowledge(_ block: Int) async throws {
        try await socket.send(.acknowledgement(block: UInt16(truncatingIfNeeded: block)), to: peer!)
    }
    while let envelope = await socket.receive(timeout: timeout) {
        if peer == nil {
            peer = envelope.remoteAddress
            result.serverPort = envelope.remoteAddress.port
        }
        guard envelope.remoteAddress == peer else { continue }
        switch try TFTPPacket.parse(envelope.data) {
        case .optionAcknowledgement(let options):
            result.optionAcknowledgement = options
            let values = result.optionValues
            blockSize = values["blksize"].flatMap(Int.init) ?? 512
            windowSize = values["windowsize"].flatMap(Int.init) ?? 1
            try await acknowledge(0)
        case .data(let block, let payload):
            result.blocksReceived.append(block)
            guard block == UInt16(truncatingIfNeeded: received + 1) else {
                try await acknowledge(received)
                continue
            }
            received += 1
            result.data += payload.readableBytesView
            let last = payload.readableBytes < blockSize
            if skipAcknowledgementOf.contains(received), !skipped.contains(received) {
                skipped.insert(received)
                if last { received -= 1; result.data.removeLast(payload.readableBytes) }
                continue
            }
            if last {
                try await acknowledge(received)
                result.completed = true
                await socket.close()
                return result
            }
            if received % windowSize == 0 { try await acknowledge(received) }
        case .error(let code, let message):
            result.error = (code, message)
            await socket.close()
            return result
        default:
            continue
        }
    }
    await socket.close()
    return result
}

/// A temporary folder for a test's files, written on NIO's thread pool.
struct Fixture: Sendable {
    let directory: String

    static func make() async throws -> Fixture {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-tftp-\(UUID().uuidString)").path
        try await NIOThreadPool.singleton.runIfActive {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        return Fixture(directory: path)
    }

    func path(_ name: String) -> String { directory + "/" + name }

    func write(_ name: String, _ bytes: [UInt8]) async throws {
        let path = self.path(name)
        try await NIOThreadPool.singleton.runIfActive {
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        }
    }

    func symlink(_ name: String, to target: String) async throws {
        let path = self.path(name)
        try await NIOThreadPool.singleton.runIfActive {
            try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: target)
        }
    }

    func remove() async {
        let directory = self.directory
        _ = try? await NIOThreadPool.singleton.runIfActive { try FileManager.default.removeItem(atPath: directory) }
    }
}

/// Deterministic bytes (a file's content that shows misplaced blocks).
func pattern(_ count: Int, seed: UInt32 = 1) -> [UInt8] {
    var state = seed &* 2_654_435_761 | 1
    return (0..<count).map { _ in
        state ^= state << 13
        state ^= state >> 17
        state ^= state << 5
        return UInt8(truncatingIfNeeded: state)
    }
}

/// Runs a TFTPService on 127.0.0.1, port 0, over `root`, with a short retransmission timeout.
func withTFTPServer<Result: Sendable>(
    root: Fixture, ipxeDirectory: String? = nil, busConfiguration: BusConfiguration? = nil,
    configure: @Sendable (inout TFTPConfiguration) -> Void = { _ in },
    _ body: @Sendable (TFTPService, Int, MessageBus) async throws -> Result
) async throws -> Result {
    var configuration = TFTPConfiguration(
        listenHost: "127.0.0.1", listenPort: 0, root: root.directory, ipxeDirectory: ipxeDirectory, timeout: .milliseconds(300),
        retries: 3, bootURL: "http://10.9.8.7:9080")
    configure(&configuration)
    let settings = configuration
    return try await TestBroker.withBus(busConfiguration) { bus in
        let service = TFTPService(bus: bus, configuration: settings, logger: TestBroker.logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await service.run() }
            defer { group.cancelAll() }
            await service.waitUntilReady()
            let port = try #require(service.boundPort)
            return try await body(service, port, bus)
        }
    }
}

/// Where `got` first differs from `expected`, or nil when they are the same bytes. Files are
/// compared through this, not `#expect(got == expected)`: on a failure swift-testing diffs the
/// two arrays, which for a file of hundreds of kilobytes keeps a thread of the cooperative pool
/// busy for many minutes and stalls every other test.
func byteDifference(_ got: [UInt8], _ expected: [UInt8]) -> String? {
    guard got != expected else { return nil }
    let first = zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(got.count, expected.count)
    return "\(got.count) bytes where \(expected.count) were expected; the first difference is at byte \(first)"
}
