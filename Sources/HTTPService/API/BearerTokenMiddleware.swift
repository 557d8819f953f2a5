import Foundation
import Hummingbird

/// Requires `Authorization: Bearer <token>` on every request.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            throw APIError.unauthorized("this API requires Authorization: Bearer <token>")
        }
        guard Self.presentedToken(header).map({ Self.constantTimeEquals($0, token) }) == true else {
            throw APIError.unauthorized("the bearer token is not valid")
        }
        return try await next(request, context)
    }

    /// The token of a `Bearer` authorization header (the scheme is case-insensitive). Pure.
    static func presentedToken(_ header: String) -> String? {
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return parts[1].trimmingCharacters(in: .whitespaces)
    }

    /// Whether the presented token is the expected one. Pure.
    // Every byte is compared whatever the first difference, so the time taken does not tell how
    // much of a guess was right.
    static func constantTimeEquals(_ presented: String, _ expected: String) -> Bool {
        let lhs = Array(presented.utf8)
        let rhs = Array(expected.utf8)
        var difference = UInt8(truncatingIfNeeded: lhs.count ^ rhs.count)
        difference |= UInt8(lhs.count == rhs.count ? 0 : 1)
        for index in 0..<rhs.count {
            difference |= rhs[index] ^ (index < lhs.count ? lhs[index] : 0)
        }
        return difference == 0
    }
}
