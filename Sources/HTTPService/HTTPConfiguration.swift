import Foundation
import NodeProtocol

/// A `HOST:PORT` to listen on (`[::1]:8080` for IPv6).
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Nil when `text` is not `HOST:PORT` with a port in 0...65535.
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains(where: \.isWhitespace), let port = Int(text[text.index(after: colon)...]),
            (0...65_535).contains(port)
        else { return nil }
        self.host = host
        self.port = port
    }

    /// Whether only this machine can connect (`127.0.0.0/8`, `::1`, `localhost`).
    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

public struct HTTPConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Everything the HTTP service needs: the boot application (open, on the provisioning network)
/// and the management API (its own address, loopback unless protected by a token).
public struct HTTPConfiguration: Sendable, Equatable {
    /// Where the boot application listens.
    public var bootListen: ListenAddress
    /// Where the management API listens.
    public var apiListen: ListenAddress
    /// The bearer token the management API requires; nil requires none (then it must listen on loopback).
    public var apiToken: String?
    public var unknownNodes: UnknownNodePolicy
    /// The graph started for a newly discovered node.
    public var discoveryGraph: String
    /// The folder `/common/…` serves.
    public var staticRoot: String
    /// A folder whose files override or extend the built-in templates (by file name).
    public var templatesDirectory: String?
    /// The URL nodes reach the boot application at, without a trailing slash (`{{bootURL}}`).
    public var bootURL: String
    /// Timeout of calls to the node registry and the task-graph runner.
    public var serviceCallTimeout: Duration
    /// Timeout of calls to the task running for a node (nobody answers when no task runs).
    public var taskCallTimeout: Duration
    /// How long a newly discovered node's request waits for its first task's profile.
    public var discoveryProfileWait: Duration
    /// Request bodies beyond this are refused (413) on the management API.
    public var maxBodyBytes: Int

    public init(
        bootListen: ListenAddress = ListenAddress(host: "0.0.0.0", port: 9080),
        apiListen: ListenAddress = ListenAddress(host: "127.0.0.1", port: 8080), apiToken: String? = nil,
        unknownNodes: UnknownNodePolicy = .discover, discoveryGraph: String = "Graph.Discovery", staticRoot: String = ".rackbus/static",
        templatesDirectory: String? = nil, bootURL: String = "http://172.31.128.1:9080", serviceCallTimeout: Duration = .seconds(5),
        taskCallTimeout: Duration = .seconds(1), discoveryProfileWait: Duration = .seconds(5), maxBodyBytes: Int = 256 * 1024
    ) {
        self.bootListen = bootListen
        self.apiListen = apiListen
        self.apiToken = apiToken
        self.unknownNodes = unknownNodes
        self.discoveryGraph = discoveryGraph
        self.staticRoot = staticRoot
        self.templatesDirectory = templatesDirectory
        self.bootURL = bootURL
        self.serviceCallTimeout = serviceCallTimeout
        self.taskCallTimeout = taskCallTimeout
        self.discoveryProfileWait = discoveryProfileWait
        self.maxBodyBytes = maxBodyBytes
    }

    /// The environment variables read by ``fromEnvironment(_:base:)``.
    public enum Key {
        public static let listen = "RACKBUS_HTTP_LISTEN"
        public static let apiListen = "RACKBUS_HTTP_API_LISTEN"
        public static let apiToken = "RACKBUS_HTTP_API_TOKEN"
        /// Shared with DHCPService, which gives unknown MACs no boot file under `ignore`.
        public static let unknownNodes = UnknownNodePolicy.environmentKey
        public static let discoveryGraph = "RACKBUS_HTTP_DISCOVERY_GRAPH"
        public static let staticRoot = "RACKBUS_HTTP_STATIC_ROOT"
        public static let templates = "RACKBUS_HTTP_TEMPLATES"
        public static let bootURL = "RACKBUS_BOOT_HTTP_URL"
    }

    /// Reads the `RACKBUS_HTTP_*` variables (and `RACKBUS_BOOT_HTTP_URL`) over `base`. Invalid
    /// values are refused with a message naming the variable.
    public static func fromEnvironment(_ environment: [String: String], base: HTTPConfiguration = HTTPConfiguration())
        throws(HTTPConfigurationError) -> HTTPConfiguration
    {
        var configuration = base
        func value(_ key: String) -> String? {
            guard let text = environment[key]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
            return text
        }
        func address(_ key: String) throws(HTTPConfigurationError) -> ListenAddress? {
            guard let text = value(key) else { return nil }
            guard let parsed = ListenAddress(text) else {
                throw HTTPConfigurationError("\(key)=\(text) must look like HOST:PORT, e.g. 0.0.0.0:9080")
            }
            return parsed
        }
        if let listen = try address(Key.listen) { configuration.bootListen = listen }
        if let listen = try address(Key.apiListen) { configuration.apiListen = listen }
        if let token = value(Key.apiToken) { configuration.apiToken = token }
        if let text = value(Key.unknownNodes) {
            guard let policy = UnknownNodePolicy(rawValue: text) else {
                let choices = UnknownNodePolicy.allCases.map(\.rawValue).joined(separator: ", ")
                throw HTTPConfigurationError("\(Key.unknownNodes)=\(text) must be one of \(choices)")
            }
            configuration.unknownNodes = policy
        }
        if let graph = value(Key.discoveryGraph) { configuration.discoveryGraph = graph }
        if let root = value(Key.staticRoot) { configuration.staticRoot = root }
        if let directory = value(Key.templates) { configuration.templatesDirectory = directory }
        if let url = value(Key.bootURL) {
            guard let normalized = Self.normalizedBootURL(url) else {
                throw HTTPConfigurationError("\(Key.bootURL)=\(url) must be an http:// or https:// URL with a host")
            }
            configuration.bootURL = normalized
        }
        try configuration.validate()
        return configuration
    }

    /// Refuses what would expose the management API: a non-loopback address without a token.
    public func validate() throws(HTTPConfigurationError) {
        if !apiListen.isLoopback && (apiToken ?? "").isEmpty {
            throw HTTPConfigurationError(
                "the management API would listen on \(apiListen) without a token: set \(Key.apiToken) or listen on 127.0.0.1 (\(Key.apiListen))"
            )
        }
        if Self.normalizedBootURL(bootURL) == nil {
            throw HTTPConfigurationError("the boot URL \(bootURL) must be an http:// or https:// URL with a host (\(Key.bootURL))")
        }
    }

    /// `url` without a trailing slash, or nil when it is not an http(s) URL with a host.
    static func normalizedBootURL(_ url: String) -> String? {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https",
            let host = components.host, !host.isEmpty, components.query == nil
        else { return nil }
        var trimmed = url
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        return trimmed
    }

    /// `{{apiBase}}`: where nodes find the boot routes.
    public var apiBase: String { bootURL + "/api/current" }
}
