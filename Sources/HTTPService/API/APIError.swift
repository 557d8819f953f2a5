import BusCore
import Foundation
import Hummingbird

/// A management-API failure, sent as `{status, name, message}` (RackHD's error shape).
public struct APIError: HTTPResponseError, Sendable, Equatable {
    public let status: HTTPResponse.Status
    public let name: String
    public let message: String

    public init(_ status: HTTPResponse.Status, name: String, message: String) {
        self.status = status
        self.name = name
        self.message = message
    }

    static func badRequest(_ message: String) -> APIError { APIError(.badRequest, name: "BadRequestError", message: message) }
    static func notFound(_ message: String) -> APIError { APIError(.notFound, name: "NotFoundError", message: message) }
    static func unauthorized(_ message: String) -> APIError { APIError(.unauthorized, name: "UnauthorizedError", message: message) }

    private struct Body: Encodable {
        var status: Int
        var name: String
        var message: String
    }

    public func response(from request: Request, context: some Hummingbird.RequestContext) throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        let body = try JSONEncoder().encode(Body(status: status.code, name: name, message: message))
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// Any error a route or Hummingbird throws, as JSON. Pure.
    ///
    /// Errors chosen on purpose (an ``APIError``, an HTTP status, a remote ErrorEvent with its own
    /// status) pass unchanged; a bus call nobody answered is a 504, one without a broker a 503. Anything else is unexpected and becomes a generic 500 whose message carries
    /// `errorID`: an error's description can hold paths, SQL or addresses that are not the
    /// client's business. ``APIErrorMiddleware`` logs the details under that id.
    public static func from(_ error: any Error, errorID: @autoclosure () -> String = ErrorEvent.makeErrorID()) -> APIError {
        concealing(error, errorID: errorID).error
    }

    /// The answer for `error`, and the id when it conceals `error`.
    static func concealing(_ error: any Error, errorID: () -> String) -> (error: APIError, concealedID: String?) {
        switch error {
        case let apiError as APIError:
            return (apiError, nil)
        case let failure as ServiceCallFailure:
            switch failure {
            case .remote(let event):
                let status = event.status.flatMap { (400..<600).contains($0) ? $0 : nil } ?? 500
                return (APIError(HTTPResponse.Status(code: status), name: event.name, message: event.message), nil)
            case .timeout(let service):
                return (APIError(.gatewayTimeout, name: "GatewayTimeoutError", message: "\(service) did not answer in time"), nil)
            case .brokerUnavailable(let reason):
                return (
                    APIError(.serviceUnavailable, name: "ServiceUnavailableError", message: "the message broker is unreachable: \(reason)"),
                    nil
                )
            case .failed:
                let id = errorID()
                return (internalError(id), id)
            }
        case let httpError as HTTPError:
            return (
                APIError(httpError.status, name: name(for: httpError.status), message: httpError.body ?? httpError.status.reasonPhrase), nil
            )
        case let responseError as any HTTPResponseError:
            return (APIError(responseError.status, name: name(for: responseError.status), message: responseError.status.reasonPhrase), nil)
        case is DecodingError:
            return (.badRequest("the body is not valid JSON of the expected shape: \(error)"), nil)
        default:
            let id = errorID()
            return (internalError(id), id)
        }
    }

    private static func internalError(_ id: String) -> APIError {
        APIError(
            .internalServerError, name: "InternalServerError",
            message: "Internal server error; the service logged its details under error id \(id).")
    }

    private static func name(for status: HTTPResponse.Status) -> String {
        switch status.code {
        case 400: "BadRequestError"
        case 401: "UnauthorizedError"
        case 404: "NotFoundError"
        case 405: "MethodNotAllowedError"
        case 409: "ConflictError"
        case 413: "PayloadTooLargeError"
        case 500..<600: "InternalServerError"
        default: "HTTPError"
        }
    }
}

/// Turns every error under it into an ``APIError`` response, so clients always get JSON, and
/// logs what a generic 500 conceals under the id the client was given.
struct APIErrorMiddleware<Context: Hummingbird.RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let (answer, concealedID) = APIError.concealing(error, errorID: ErrorEvent.makeErrorID)
            if let concealedID {
                context.logger.error(
                    "answered an internal error with a 500",
                    metadata: ["error.id": "\(concealedID)", "error": "\(error)", "http.path": "\(request.uri.path)"])
            }
            return try answer.response(from: request, context: context)
        }
    }
}
