import BusCore

/// How a call to another service over the bus failed, in the terms both applications answer with.
public enum ServiceCallFailure: Error, Sendable, Equatable {
    /// The service answered with an ErrorEvent.
    case remote(ErrorEvent)
    /// Nobody answered in time.
    case timeout(service: String)
    /// The broker cannot be reached right now.
    case brokerUnavailable(String)
    /// Anything else (a reply that does not decode, …).
    case failed(String)

    /// Sorts a bus error. Pure.
    public static func from(_ error: any Error, service: String) -> ServiceCallFailure {
        guard let bus = error as? BusError else { return .failed(String(describing: error)) }
        if let remote = bus.remote { return .remote(remote) }
        switch bus.code {
        case .timeout: return .timeout(service: service)
        case .notConnected, .connectionLost, .connectionFailed, .backpressure, .shutdown:
            return .brokerUnavailable(bus.message)
        default:
            // Not `description`, which adds the underlying error and the source location for logs.
            return .failed("BusError.\(bus.code): \(bus.message)")
        }
    }
}

/// Who answers which calls, for error messages.
enum ServiceName {
    static let registry = "the node registry"
    static let taskGraphRunner = "the task-graph runner"
}

extension MessageBus {
    /// `call`, with failures sorted into ``ServiceCallFailure``.
    func request<Request: BusRequest>(_ request: Request, timeout: Duration, service: String) async throws(ServiceCallFailure)
        -> Request.Reply
    {
        do {
            return try await call(request, timeout: timeout)
        } catch {
            throw ServiceCallFailure.from(error, service: service)
        }
    }
}
