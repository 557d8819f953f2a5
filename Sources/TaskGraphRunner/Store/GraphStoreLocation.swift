import Foundation

/// Which store a TaskGraphRunner uses, from one setting (`RACKBUS_TASKGRAPH_DATABASE`,
/// `--taskgraph-database`): a `postgres://` or `postgresql://` URL names a PostgreSQL database
/// shared by every instance; anything else is the path of a SQLite file private to this process
/// (`:memory:` keeps nothing).
public enum GraphStoreLocation: Sendable, Equatable {
    case sqlite(path: String)
    case postgres(PostgresLocation)

    public struct PostgresLocation: Sendable, Equatable {
        public enum TLS: String, Sendable {
            case disable, prefer, require
        }
        public var host: String
        public var port: Int
        public var username: String
        public var password: String?
        public var database: String
        public var tls: TLS

        /// The URL without its password, for logs.
        public var redacted: String { "postgres://\(username)@\(host):\(port)/\(database)" }
    }

    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// Parses `setting`. A PostgreSQL URL takes `?sslmode=disable|prefer|require` (libpq's
    /// names; default `prefer`); its user defaults to `rackbus`, its port to 5432 and its
    /// database to the user's name.
    public init(_ setting: String) throws(ParseError) {
        let scheme = setting.prefix { $0 != ":" }.lowercased()
        guard scheme == "postgres" || scheme == "postgresql" else {
            guard !setting.isEmpty else { throw ParseError(description: "the task graph database setting is empty") }
            self = .sqlite(path: setting)
            return
        }
        guard let url = URLComponents(string: setting), let host = url.host, !host.isEmpty else {
            throw ParseError(description: "\(Self.redact(setting)) is not a PostgreSQL URL (postgres://user:password@host:port/database)")
        }
        let username = url.user.flatMap { $0.isEmpty ? nil : $0 } ?? "rackbus"
        let path = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
        var tls = PostgresLocation.TLS.prefer
        for item in url.queryItems ?? [] {
            guard item.name == "sslmode" else {
                throw ParseError(description: "unknown PostgreSQL URL option \(item.name) (only sslmode is understood)")
            }
            guard let mode = item.value.flatMap(PostgresLocation.TLS.init(rawValue:)) else {
                throw ParseError(description: "sslmode must be disable, prefer or require, not \(item.value ?? "nothing")")
            }
            tls = mode
        }
        if let port = url.port, !(1...65535).contains(port) {
            throw ParseError(description: "PostgreSQL port \(port) is out of range")
        }
        self = .postgres(
            PostgresLocation(
                host: host, port: url.port ?? 5432, username: username, password: url.password, database: path.isEmpty ? username : path,
                tls: tls))
    }

    /// For logs: a URL loses its password.
    public var description: String {
        switch self {
        case .sqlite(let path): path
        case .postgres(let location): location.redacted
        }
    }

    private static func redact(_ setting: String) -> String {
        guard var url = URLComponents(string: setting), url.password != nil else { return setting }
        url.password = "***"
        return url.string ?? "the URL"
    }
}
