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

    /// A failed bus call as the API answers it: the ErrorEvent's own status, 504 when nobody
    /// answered, 503 when the broker is unreachable. Pure.
    public static func from(_ failure: ServiceCallFailure) -> APIError {
        switch failure {
        case .remote(let event):
            let status = event.status.flatMap { (400..<600).contains($0) ? $0 : nil } ?? 500
            return APIError(HTTPResponse.Status(code: status), name: event.name, message: event.message)
        case .timeout(let service):
            return APIError(.gatewayTimeout, name: "GatewayTimeoutError", message: "\(service) did not answer in time")
        case .brokerUnavailable(let reason):
            return APIError(.serviceUnavailable, name: "ServiceUnavailableError", message: "the message broker is unreachable: \(reason)")
        case .failed(let reason):
            return APIError(.internalServerError, name: "InternalServerError", message: reason)
        }
    }

    /// Any error a route or Hummingbird throws, as JSON. Pure.
    public static func from(_ error: any Error) -> APIError {
        switch error {
        case let apiError as APIError:
            return apiError
        case let failure as ServiceCallFailure:
            return from(failure)
        case let httpError as HTTPError:
            return APIError(httpError.status, name: name(for: httpError.status), message: httpError.body ?? httpError.status.reasonPhrase)
        case let responseError as any HTTPResponseError:
            return APIError(responseError.status, name: name(for: responseError.status), message: responseError.status.reasonPhrase)
        case is DecodingError:
            return .badRequest("the body is not valid JSON of the expected shape: \(error)")
        default:
            return APIError(.internalServerError, name: "InternalServerError", message: String(describing: error))
        }
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

/// Turns every error under it into an ``APIError`` response, so clients always get JSON.
struct APIErrorMiddleware<Context: Hummingbird.RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return try APIError.from(error).response(from: request, context: context)
        }
    }
}
