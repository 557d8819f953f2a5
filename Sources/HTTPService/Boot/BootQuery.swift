import Foundation
import NodeProtocol

/// A query string, decoded strictly: a malformed percent escape (`%zz`) is an error rather than
/// being passed on as text. Pure.
public struct QueryParameters: Sendable, Equatable {
    public private(set) var pairs: [(name: String, value: String)]

    public struct Malformed: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// Parses `a=1&b=2&b=3` (without the `?`); `+` is a space, as in HTML forms.
    public init(_ rawQuery: String?) throws(Malformed) {
        pairs = []
        guard let rawQuery, !rawQuery.isEmpty else { return }
        for field in rawQuery.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = field.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = try Self.decode(parts[0])
            let value = parts.count > 1 ? try Self.decode(parts[1]) : ""
            pairs.append((name, value))
        }
    }

    private static func decode(_ text: Substring) throws(Malformed) -> String {
        let spaced = text.replacingOccurrences(of: "+", with: " ")
        guard let decoded = spaced.removingPercentEncoding else {
            throw Malformed(description: "malformed percent-encoding in '\(text.prefix(64))'")
        }
        return decoded
    }

    /// Every value of `name`, with comma-separated values split (`macs=a,b&macs=c` is a, b, c);
    /// empty values are left out.
    public func list(_ name: String) -> [String] {
        pairs.filter { $0.name == name }.flatMap { $0.value.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The first non-empty value of `name`.
    public func first(_ name: String) -> String? {
        pairs.first { $0.name == name && !$0.value.isEmpty }?.value
    }

    public static func == (lhs: QueryParameters, rhs: QueryParameters) -> Bool {
        lhs.pairs.elementsEqual(rhs.pairs) { $0.name == $1.name && $0.value == $1.value }
    }
}

/// Why a boot request cannot be answered as asked: the route answers 400 with `message`.
public struct BootRequestError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension QueryParameters {
    /// The `macs` of a boot request, normalized (`52:54:00:12:34:56`), in order, without repeats.
    /// Throws when there is none or one is not a MAC.
    public func requiredMACs() throws(BootRequestError) -> [String] {
        let given = list("macs")
        guard !given.isEmpty else { throw BootRequestError("macs is required (e.g. ?macs=52:54:00:12:34:56)") }
        var macs: [String] = []
        for text in given {
            guard let mac = NodeIdentity.normalizedMAC(text) else { throw BootRequestError("'\(text.prefix(64))' is not a MAC address") }
            if !macs.contains(mac) { macs.append(mac) }
        }
        return macs
    }
}

extension QueryParameters {
    /// The `ips` of a boot request (IPv4 or IPv6 addresses), in order; none is fine. Throws when one is not an address.
    public func optionalIPs() throws(BootRequestError) -> [String] {
        var ips: [String] = []
        for text in list("ips") {
            guard Self.isIPAddress(text) else { throw BootRequestError("'\(text.prefix(64))' is not an IP address") }
            if !ips.contains(text) { ips.append(text) }
        }
        return ips
    }

    static func isIPAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }
}
