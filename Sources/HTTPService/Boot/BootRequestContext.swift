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
}
