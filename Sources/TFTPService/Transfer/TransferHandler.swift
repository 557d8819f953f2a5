import NIOCore
import NIOPosix

/// How one transfer ended, for events and metrics.
struct TransferOutcome: Sendable {
    enum Result: Sendable, Equatable {
        case success
        case failure(TransferFailure)
    }

    var result: Result
    /// Payload bytes in DATA packets, retransmissions excluded.
    var bytesSent: Int
    var retransmittedBlocks: Int
    var duration: Duration
}

enum TransferFailure: Sendable, Equatable {
    case timedOut(String)
    case clientError(String)
    case readError(String)
    case shutdown

    var reason: String {
        switch self {
        case .timedOut(let text), .clientError(let text), .readError(let text): text
        case .shutdown: "server shutting down"
        }
    }

    var metricLabel: String {
        switch self {
        case .timedOut: "timeout"
        case .clientError: "client_error"
        case .readError: "read_error"
        case .shutdown: "shutdown"
        }
    }
}

/// What a transfer's channel is given when it opens.
struct TransferSettings: Sendable {
    var peer: SocketAddress
    var content: TransferContent
    var mode: TransferMode
    var negotiated: OptionNegotiation.Result
    var timeout: TimeAmount
    var retries: Int
    var fileIO: NonBlockingFileIO
    /// Counts packets the transfer drops or answers with an error (metric label).
    var countInvalidPacket: @Sendable (String) -> Void
    /// Called once, on the channel's event loop, when the transfer ends.
    var finished: @Sendable (TransferOutcome) -> Void
}

/// One read transfer on its own UDP socket: feeds packets and timeouts to a ``TransferMachine``
/// and carries out its actions. Everything happens on the channel's event loop; file chunks come
/// from `NonBlockingFileIO`'s thread pool and are read ahead of the window that needs them.
final class TransferHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private let settings: TransferSettings
    private var machine: TransferMachine
    private let blockSize: Int
    private let wireSize: Int
    private let started = ContinuousClock.now
    private var context: ChannelHandlerContext?
    private var ended = false

    /// Encoded DATA packets of the blocks sent and not yet acknowledged, from `cachedFirst` on.
    private var cached: [ByteBuffer] = []
    private var cachedFirst = 1
    /// The blocks of the current action still to write.
    private var nextToSend = 1
    private var lastToSend = 0
    private var payloadBytesSent = 0
    private var retransmittedBlocks = 0

    /// Wire bytes read from the source and not yet packed into blocks.
    private var unsent = ByteBuffer()
    private var fileHandle: NIOFileHandle?
    private var fileSize = 0
    private var fileOffset = 0
    private var readInFlight = false
    private let readChunkSize: Int

    private var deadline = NIODeadline.distantFuture
    private var timer: Scheduled<Void>?

    init(settings: TransferSettings) {
        self.settings = settings
        blockSize = settings.negotiated.blockSize
        wireSize = settings.content.wireSize
        machine = TransferMachine(
            size: wireSize, blockSize: blockSize, windowSize: settings.negotiated.windowSize, retryLimit: settings.retries,
            optionAcknowledgement: !settings.negotiated.acknowledged.isEmpty)
        // Two windows ahead, at least 256 KiB per read: few trips to the thread pool.
        readChunkSize = max(256 * 1024, 2 * blockSize * settings.negotiated.windowSize)
        switch settings.content {
        case .file(let descriptor, let size, _):
            fileHandle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: descriptor)
            fileSize = size
        case .bytes(let bytes):
            unsent = ByteBuffer(bytes: bytes)
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { begin() }
    }

    func channelActive(context: ChannelHandlerContext) {
        begin()
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        end(.failure(.shutdown))
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        end(.failure(.shutdown))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors and the like: the retransmission timer decides whether the client is gone.
    }

    private var begun = false

    private func begin() {
        guard !begun else { return }
        begun = true
        fillAhead()
        perform(machine.handle(.start))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard envelope.remoteAddress == settings.peer else {
            // RFC 1350: a packet from another TID gets error 5, and the transfer goes on.
            settings.countInvalidPacket("unknown_transfer_id")
            let error = TFTPPacket.error(.unknownTransferID, "unknown transfer ID").encoded(allocator: context.channel.allocator)
            context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: error)), promise: nil)
            return
        }
        switch try? TFTPPacket.parse(envelope.data) {
        case .acknowledgement(let block):
            perform(machine.handle(.acknowledgement(block: block)))
        case .error(let code, let message):
            perform(machine.handle(.clientError(code: code, message: message)))
        default:
            // Anything else from the client is dropped; the timer recovers from what it lost.
            settings.countInvalidPacket("unexpected_packet")
        }
    }

    private func perform(_ actions: [TransferMachine.Action]) {
        for action in actions {
            switch action {
            case .sendOptionAcknowledgement:
                guard let context else { return }
                let packet = TFTPPacket.optionAcknowledgement(settings.negotiated.acknowledged).encoded(allocator: context.channel.allocator)
                context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: settings.peer, data: packet)), promise: nil)
                armTimer()
            case .sendBlocks(let blocks, let retransmitted):
                retransmittedBlocks += retransmitted
                // Blocks before this window were acknowledged: forget them.
                let acknowledgedCount = min(cached.count, max(0, blocks.lowerBound - cachedFirst))
                cached.removeFirst(acknowledgedCount)
                cachedFirst += acknowledgedCount
                nextToSend = blocks.lowerBound
                lastToSend = blocks.upperBound
                // No timeout while the window is still being written (a file read may be pending).
                deadline = .distantFuture
                sendPending()
            case .finish:
                end(.success)
            case .fail(let reason):
                switch reason {
                case .timedOut: end(.failure(.timedOut(reason.description)))
                case .clientError: end(.failure(.clientError(reason.description)))
                }
            }
        }
    }

    /// Writes the blocks of the current action that are available, then flushes them together.
    private func sendPending() {
        guard let context, !ended else { return }
        var wrote = false
        while nextToSend <= lastToSend {
            guard let packet = dataPacket(nextToSend, allocator: context.channel.allocator) else { break }
            context.write(wrapOutboundOut(AddressedEnvelope(remoteAddress: settings.peer, data: packet)), promise: nil)
            wrote = true
            nextToSend += 1
        }
        if wrote { context.flush() }
        if nextToSend > lastToSend { armTimer() }
        fillAhead()
    }

    /// The DATA packet of block `index`: from the cache when it was sent before, else packed from
    /// the unsent bytes (nil while they have not been read yet).
    private func dataPacket(_ index: Int, allocator: ByteBufferAllocator) -> ByteBuffer? {
        let offsetInCache = index - cachedFirst
        if offsetInCache < cached.count { return cached[offsetInCache] }
        let payloadSize = min(blockSize, wireSize - (index - 1) * blockSize)
        guard unsent.readableBytes >= payloadSize else { return nil }
        var packet = allocator.buffer(capacity: 4 + payloadSize)
        packet.writeInteger(TFTPOpcode.data.rawValue)
        packet.writeInteger(TransferMachine.wireBlock(index))
        if var payload = unsent.readSlice(length: payloadSize) { packet.writeBuffer(&payload) }
        cached.append(packet)
        payloadBytesSent += payloadSize
        return packet
    }

    /// Keeps a chunk of the file read ahead of the blocks being sent.
    private func fillAhead() {
        guard let fileHandle, !readInFlight, !ended, fileOffset < fileSize, unsent.readableBytes < readChunkSize else { return }
        guard let eventLoop = context?.eventLoop else { return }
        readInFlight = true
        let byteCount = min(readChunkSize, fileSize - fileOffset)
        settings.fileIO.read(
            fileHandle: fileHandle, fromOffset: Int64(fileOffset), byteCount: byteCount, allocator: ByteBufferAllocator(), eventLoop: eventLoop
        ).assumeIsolated().whenComplete { result in
            self.readInFlight = false
            switch result {
            case .success(var chunk):
                guard chunk.readableBytes > 0 else {
                    self.end(.failure(.readError("the file got shorter during the transfer")))
                    return
                }
                self.fileOffset += chunk.readableBytes
                self.append(&chunk)
                self.sendPending()
            case .failure(let error):
                self.end(.failure(.readError("read failed: \(error)")))
            }
        }
    }

    private func append(_ chunk: inout ByteBuffer) {
        if settings.mode == .netascii {
            unsent.discardReadBytes()
            Netascii.encode(chunk, into: &unsent)
        } else if unsent.readableBytes == 0 {
            unsent = chunk
        } else {
            unsent.discardReadBytes()
            unsent.writeBuffer(&chunk)
        }
    }

    private func armTimer() {
        guard let context, !ended else { return }
        deadline = .now() + settings.timeout
        // One scheduled task at a time; when it fires early (the deadline moved) it reschedules.
        if timer == nil { schedule(on: context.eventLoop) }
    }

    private func schedule(on eventLoop: any EventLoop) {
        timer = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.timer = nil
            guard !self.ended, self.deadline != .distantFuture else { return }
            if NIODeadline.now() < self.deadline {
                self.schedule(on: eventLoop)
            } else {
                self.perform(self.machine.handle(.timeout))
            }
        }
    }

    private func end(_ result: TransferOutcome.Result) {
        guard !ended else { return }
        ended = true
        timer?.cancel()
        timer = nil
        try? fileHandle?.close()
        fileHandle = nil
        cached.removeAll()
        settings.finished(
            TransferOutcome(
                result: result, bytesSent: payloadBytesSent, retransmittedBlocks: retransmittedBlocks,
                duration: ContinuousClock.now - started))
        context?.close(promise: nil)
    }
}
