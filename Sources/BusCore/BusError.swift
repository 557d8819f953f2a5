/// Every failure BusCore reports. A struct with an extensible ``Code`` rather than a public enum,
/// so that new failure kinds can be added without breaking callers that switch over codes.
public struct BusError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Sendable {
            case timeout
            case remote
            case connectionLost
            case connectionFailed
            case notConnected
            case channelClosed
            case unroutable
            case publishNacked
            case encoding
            case decoding
            case invalidConfiguration
            case shutdown
            case cancelled
            case backpressure
            case brokerRefused
            case callerNotFollowing
            case resourceExhausted
        }

        fileprivate let base: Base

        /// The call's deadline passed before a reply arrived.
        public static let timeout = Code(base: .timeout)
        /// The server answered with an ErrorEvent; see ``BusError/remote``.
        public static let remote = Code(base: .remote)
        /// The connection dropped while the operation was in flight. Safe to retry.
        public static let connectionLost = Code(base: .connectionLost)
        /// A connection attempt failed (refused, TLS, authentication).
        public static let connectionFailed = Code(base: .connectionFailed)
        /// The operation needs a live connection and there is none right now.
        public static let notConnected = Code(base: .notConnected)
        /// The broker closed a channel (for example a passive declare of a missing exchange).
        public static let channelClosed = Code(base: .channelClosed)
        /// A mandatory publish matched no queue.
        public static let unroutable = Code(base: .unroutable)
        /// The broker refused a confirmed publish.
        public static let publishNacked = Code(base: .publishNacked)
        /// A value could not be encoded to JSON.
        public static let encoding = Code(base: .encoding)
        /// A message body could not be decoded into the expected type.
        public static let decoding = Code(base: .decoding)
        /// The configuration (usually the URL) is not valid.
        public static let invalidConfiguration = Code(base: .invalidConfiguration)
        /// The bus has been shut down.
        public static let shutdown = Code(base: .shutdown)
        /// The calling task was cancelled.
        public static let cancelled = Code(base: .cancelled)
        /// Too many operations are queued while the broker is unreachable.
        public static let backpressure = Code(base: .backpressure)
        /// The broker refused a declaration or another synchronous method.
        public static let brokerRefused = Code(base: .brokerRefused)
        /// A command asked its caller a question, but the caller does not follow the command
        /// (a plain RPC caller, which only waits for the final reply).
        public static let callerNotFollowing = Code(base: .callerNotFollowing)
        /// The process lacks a system resource the bus needs (a file descriptor).
        public static let resourceExhausted = Code(base: .resourceExhausted)

        public var description: String { base.rawValue }
    }

    public let code: Code
    /// A human-readable explanation.
    public let message: String
    /// The ErrorEvent a server replied with, when ``code`` is ``Code/remote``.
    public let remote: ErrorEvent?
    /// The AMQP reply code when the broker closed something (404, 406, 320, …).
    public let replyCode: Int?

    public init(code: Code, message: String, remote: ErrorEvent? = nil, replyCode: Int? = nil) {
        self.code = code
        self.message = message
        self.remote = remote
        self.replyCode = replyCode
    }

    /// The HTTP-like status of a remote error, if any.
    public var status: Int? { remote?.status }

    /// Whether repeating the same operation later may succeed.
    public var isRetriable: Bool {
        switch code.base {
        case .timeout, .connectionLost, .connectionFailed, .notConnected, .backpressure:
            return true
        case .remote:
            // 5xx and errors without a status may be transient; 4xx are the caller's fault.
            guard let status = remote?.status else { return true }
            return status >= 500
        default:
            return false
        }
    }

    public var description: String {
        if let remote {
            let status = remote.status.map { " (status \($0))" } ?? ""
            return "\(remote.name): \(remote.message)\(status)"
        }
        return "BusError.\(code): \(message)"
    }

    static func remote(_ event: ErrorEvent) -> BusError {
        BusError(code: .remote, message: event.message, remote: event)
    }
}
