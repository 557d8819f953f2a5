import Hummingbird

/// The request context of the boot application: Hummingbird's core storage and the client's address.
public struct BootRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The client's IP address, for the `http.response` events.
    public let clientAddress: String?

    public init(source: ApplicationRequestContextSource) {
        coreContext = CoreRequestContextStorage(source: source)
        clientAddress = source.channel.remoteAddress?.ipAddress
    }

    /// Boot routes take no bodies.
    public var maxUploadSize: Int { 0 }
}

/// A boot-route failure: a status and a one-line plain-text reason (firmware shows it as is).
public struct BootHTTPError: HTTPResponseError, Sendable, Equatable {
    public let status: HTTPResponse.Status
    public let message: String

    public init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: message + "\n")))
    }

    /// A failed registry or task-graph call, as the boot routes answer it: the node retries on
    /// a 503, so anything that is not the request's fault is one. Pure.
    public static func from(_ failure: ServiceCallFailure) -> BootHTTPError {
        switch failure {
        case .remote(let event):
            if let status = event.status, (400..<500).contains(status) {
                return BootHTTPError(HTTPResponse.Status(code: status), event.message)
            }
            return BootHTTPError(.serviceUnavailable, "\(event.name): \(event.message)")
        case .timeout(let service):
            return BootHTTPError(.serviceUnavailable, "\(service) did not answer; try again")
        case .brokerUnavailable(let reason):
            return BootHTTPError(.serviceUnavailable, "the message broker is unreachable (\(reason)); try again")
        case .failed(let reason):
            return BootHTTPError(.serviceUnavailable, reason)
        }
    }
}
