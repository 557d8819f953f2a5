/// The sending side of one read transfer (RFC 1350 with RFC 7440 windows), as a value: it takes
/// inputs and returns what to do, and touches no socket, file or clock.
///
/// Blocks are numbered by their absolute index from 1; the wire carries `index % 65536`, so a
/// transfer of more than 65535 blocks wraps to 0 and goes on (what tftpd-hpa and iPXE do).
public struct TransferMachine: Sendable {
    public enum Input: Sendable, Equatable {
        case start
        case acknowledgement(block: UInt16)
        case timeout
        case clientError(code: UInt16, message: String)
    }

    public enum FailureReason: Sendable, Equatable {
        case timedOut(retries: Int)
        case clientError(code: UInt16, message: String)

        public var description: String {
            switch self {
            case .timedOut(let retries): "no acknowledgement after \(retries) retransmissions"
            case .clientError(let code, let message): "client error \(code): \(message)"
            }
        }
    }

    public enum Action: Sendable, Equatable {
        case sendOptionAcknowledgement
        /// Send these blocks (absolute indices), then restart the retransmission timer.
        /// `retransmitted` of them were sent before.
        case sendBlocks(ClosedRange<Int>, retransmitted: Int)
        /// Every block was acknowledged.
        case finish
        case fail(FailureReason)
    }

    private enum Phase: Sendable, Equatable {
        case idle
        case awaitingOptionAcknowledgement
        case sending
        case done
    }

    public let totalBlocks: Int
    public let windowSize: Int
    public let retryLimit: Int
    private let sendsOptionAcknowledgement: Bool
    private var phase = Phase.idle
    /// The highest block the client acknowledged (0: none yet).
    public private(set) var acknowledged = 0
    /// The highest block sent so far.
    public private(set) var highestSent = 0
    private var retriesUsed = 0

    /// - Parameters:
    ///   - size: bytes to send. The last block is short, and empty when `size` is a multiple of
    ///     `blockSize` (RFC 1350: a block under `blockSize` ends the transfer).
    ///   - optionAcknowledgement: whether an OACK goes first (then data waits for ACK 0).
    public init(size: Int, blockSize: Int, windowSize: Int, retryLimit: Int, optionAcknowledgement: Bool) {
        totalBlocks = size / blockSize + 1
        self.windowSize = max(1, windowSize)
        self.retryLimit = max(0, retryLimit)
        sendsOptionAcknowledgement = optionAcknowledgement
    }

    public static func wireBlock(_ index: Int) -> UInt16 { UInt16(truncatingIfNeeded: index) }

    public var isFinished: Bool { phase == .done }

    public mutating func handle(_ input: Input) -> [Action] {
        switch (phase, input) {
        case (.done, _):
            return []
        case (_, .clientError(let code, let message)):
            phase = .done
            return [.fail(.clientError(code: code, message: message))]
        case (.idle, .start):
            if sendsOptionAcknowledgement {
                phase = .awaitingOptionAcknowledgement
                return [.sendOptionAcknowledgement]
            }
            phase = .sending
            return [sendWindow(after: 0)]
        case (.idle, _), (_, .start):
            return []
        case (.awaitingOptionAcknowledgement, .acknowledgement(let block)):
            // Only ACK 0 accepts the OACK; anything else is stale or stray.
            guard block == 0 else { return [] }
            phase = .sending
            retriesUsed = 0
            return [sendWindow(after: 0)]
        case (.awaitingOptionAcknowledgement, .timeout):
            guard retriesUsed < retryLimit else { return giveUp() }
            retriesUsed += 1
            return [.sendOptionAcknowledgement]
        case (.sending, .acknowledgement(let block)):
            return acknowledge(block)
        case (.sending, .timeout):
            guard retriesUsed < retryLimit else { return giveUp() }
            retriesUsed += 1
            // RFC 7440: on timeout the whole unacknowledged window goes again.
            return [sendWindow(after: acknowledged)]
        }
    }

    private mutating func acknowledge(_ block: UInt16) -> [Action] {
        // The ACK names a block in (acknowledged, highestSent], read modulo 65536.
        let distance = Int(block &- Self.wireBlock(acknowledged))
        // distance 0 is a duplicate ACK of what was already acknowledged: answering it would
        // double every later block (the Sorcerer's Apprentice bug), so it is ignored.
        guard distance > 0, distance <= highestSent - acknowledged else { return [] }
        acknowledged += distance
        retriesUsed = 0
        if acknowledged == totalBlocks {
            phase = .done
            return [.finish]
        }
        // A whole window or part of one: the next window starts after the acknowledged block,
        // resending whatever the client did not get (RFC 7440).
        return [sendWindow(after: acknowledged)]
    }

    private mutating func sendWindow(after block: Int) -> Action {
        let first = block + 1
        let last = min(block + windowSize, totalBlocks)
        let retransmitted = max(0, min(last, highestSent) - first + 1)
        highestSent = max(highestSent, last)
        return .sendBlocks(first...last, retransmitted: retransmitted)
    }

    private mutating func giveUp() -> [Action] {
        phase = .done
        return [.fail(.timedOut(retries: retryLimit))]
    }
}
