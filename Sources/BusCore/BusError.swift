/// Every failure BusCore reports. A struct with an extensible ``Code`` rather than a public enum,
/// so that new failure kinds can be added without breaking callers that switch over codes.
///
/// The bus's operations declare `throws(BusError)`, so a caller's `catch` gets a `BusError`
/// without a cast:
///
/// ```swift
/// do {
///     let mac = try await bus.call(LookupIpLease(value: ip))
/// } catch {
///     if error.isRetriable { … }    // `error` is a BusError: no cast
/// }
/// ```
///
/// (In a closure, Swift 6 does not infer the thrown type of a `do` block: write
/// `do throws(BusError) { … }` there.)
///
/// As postgres-nio's `PSQLError`, an error names where it happened (``file`` and ``line``: the
/// caller's call site for the bus's operations) and keeps the error it was made from
/// (``underlying``, for example the `DecodingError` of a reply that does not decode).
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
    /// The error this one was made from, when there is one: the `EncodingError` or
    /// `DecodingError` of ``Code/encoding`` and ``Code/decoding``, for example.
    public let underlying: (any Error)?
    /// The file (`#fileID`) the error is attributed to. The bus's operations take `file` and
    /// `line` parameters (defaulting to their caller's location, as postgres-nio's queries do)
    /// and report their failures there, so a log line names the call that failed; an error
    /// thrown elsewhere names the place that created it.
    public internal(set) var file: String
    /// The line in ``file``.
    public internal(set) var line: Int

    public init(
        code: Code, message: String, remote: ErrorEvent? = nil, replyCode: Int? = nil, underlying: (any Error)? = nil,
        file: String = #fileID, line: Int = #line
    ) {
        self.code = code
        self.message = message
        self.remote = remote
        self.replyCode = replyCode
        self.underlying = underlying
        self.file = file
        self.line = line
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

    /// For logs. A remote error reads as its ErrorEvent (`NotFoundError: no lease (status 404)`);
    /// any other as its code and message, then the underlying error and the location
    /// (`BusError.decoding: cannot decode Int: not valid JSON (underlying: …) at App/Lookup.swift:12`).
    public var description: String {
        if let remote {
            let status = remote.status.map { " (status \($0))" } ?? ""
            return "\(remote.name): \(remote.message)\(status)"
        }
        let underlying = underlying.map { " (underlying: \($0))" } ?? ""
        return "BusError.\(code): \(message)\(underlying) at \(file):\(line)"
    }

    static func remote(_ event: ErrorEvent, file: String = #fileID, line: Int = #line) -> BusError {
        BusError(code: .remote, message: event.message, remote: event, file: file, line: line)
    }

    /// This error, attributed to `file`:`line`: how an operation reports its failures at its
    /// caller's call site.
    func located(at file: String, _ line: Int) -> BusError {
        var located = self
        located.file = file
        located.line = line
        return located
    }

    /// An error out of machinery that reports failures as `any Error` although BusCore puts only
    /// BusErrors through it (checked continuations, task groups, cancellation handlers). Anything
    /// else is wrapped as ``underlying``: a `CancellationError` as ``Code/cancelled``, any other
    /// error as ``Code/connectionLost``, which is what the connection makes of such errors.
    static func from(_ error: any Error, file: String = #fileID, line: Int = #line) -> BusError {
        if let error = error as? BusError { return error }
        if error is CancellationError {
            return BusError(code: .cancelled, message: "cancelled", underlying: error, file: file, line: line)
        }
        return BusError(code: .connectionLost, message: "\(error)", underlying: error, file: file, line: line)
    }
}
