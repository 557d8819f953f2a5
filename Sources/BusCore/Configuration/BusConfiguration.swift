import Foundation

/// Everything a ``MessageBus`` needs to know. Build it from a URL with ``init(url:)`` or from the
/// environment with ``fromEnvironment(_:)``; every other field has a production default.
public struct BusConfiguration: Sendable, Equatable {
    public struct TLS: Sendable, Equatable {
        /// PEM file of the CA that signed the broker's certificate.
        public var caCertificatePath: String?
        /// PEM client certificate and key, for brokers that ask for one.
        public var clientCertificatePath: String?
        public var clientKeyPath: String?
        /// Check the broker's certificate chain against the CA.
        public var verifyPeer: Bool
        /// Check that the certificate names the host we connected to.
        public var verifyHostname: Bool

        public init(
            caCertificatePath: String? = nil, clientCertificatePath: String? = nil, clientKeyPath: String? = nil,
            verifyPeer: Bool = true, verifyHostname: Bool = true
        ) {
            self.caCertificatePath = caCertificatePath
            self.clientCertificatePath = clientCertificatePath
            self.clientKeyPath = clientKeyPath
            self.verifyPeer = verifyPeer
            self.verifyHostname = verifyHostname
        }
    }

    /// What the URL's query and the initializer fall back to.
    public enum Defaults {
        public static let heartbeat = Duration.seconds(30)
        public static let connectTimeout = Duration.seconds(5)
        public static let broadcastWindow = 4096
    }

    /// The URL used when `RACKBUS_AMQP_URL` is not set.
    public static let defaultURL = "amqp://guest:guest@127.0.0.1:5672/"
    /// The environment variable that names the broker.
    public static let urlEnvironmentKey = "RACKBUS_AMQP_URL"

    /// One broker address: a node of a cluster, or the one broker.
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
        public var description: String { "\(host):\(port)" }
    }

    /// Where the broker is: one address, or the nodes of a cluster. A connection tries them in
    /// turn, starting from a random one; never empty.
    public var endpoints: [Endpoint]
    /// The first address's host.
    public var host: String {
        get { endpoints[0].host }
        set { endpoints[0].host = newValue }
    }
    /// The first address's port.
    public var port: Int {
        get { endpoints[0].port }
        set { endpoints[0].port = newValue }
    }
    public var user: String
    public var password: String
    public var virtualHost: String
    /// TLS settings; `nil` for plain `amqp://`.
    public var tls: TLS?
    /// Heartbeat interval negotiated with the broker; 0 disables heartbeats.
    public var heartbeat: Duration
    /// How long a TCP/TLS connect and the AMQP handshake may take.
    public var connectTimeout: Duration
    /// How long a synchronous AMQP method (declare, bind, consume) may wait for its reply.
    public var methodTimeout: Duration
    /// The RPC timeout used when a call does not give one. RackHD's 1 s was its users' top complaint.
    public var defaultCallTimeout: Duration
    /// The prefix of the exchange names (`on` gives `on.events`).
    public var exchangePrefix: String
    /// Reconnect backoff.
    public var reconnect: ReconnectPolicy
    /// How the durable work queues (``MessageBus/workQueue(named:bindings:prefetch:arguments:as:file:line:)``)
    /// are declared: `classic`, the default, or `quorum` (Raft-replicated over a cluster's nodes,
    /// with a dead-letter queue). `RACKBUS_QUEUE_TYPE`.
    public var workQueueType: WorkQueueType = .classic
    /// For quorum work queues: how many times one message is delivered before the broker moves
    /// it to the queue's dead-letter queue (a poison message). `RACKBUS_DELIVERY_LIMIT`.
    public var deliveryLimit = 20

    public enum WorkQueueType: String, Sendable, CaseIterable {
        case classic
        case quorum
    }

    /// The environment variables for the work queues' type and delivery limit.
    public static let queueTypeEnvironmentKey = "RACKBUS_QUEUE_TYPE"
    public static let deliveryLimitEnvironmentKey = "RACKBUS_DELIVERY_LIMIT"
    /// How many publishes may wait while the broker is unreachable before `publish` pushes back.
    public var maxBufferedOperations: Int
    /// Name reported to the broker (visible in the management UI) and used in log metadata.
    public var connectionName: String
    /// Whether each connection declares the nine exchanges, which needs configure permission on
    /// them (and so would let the user delete them), or only checks that they exist
    /// (`exchanges=passive` in the URL). With a user per service, an administrator declares
    /// them once (`scripts/broker users` does) and the services run passive.
    public var declaresExchanges = true
    /// How many deliveries a broadcast subscription may hold that its consumer has not taken
    /// yet (at most 65,535). Beyond that the broker keeps them in the subscriber's queue, so a
    /// slow consumer cannot make this process grow without bound. 0 turns the window off
    /// (auto-ack: the broker pushes everything at once).
    public var broadcastWindow: Int

    public init(
        host: String = "127.0.0.1", port: Int? = nil, user: String = "guest", password: String = "guest",
        virtualHost: String = "/", tls: TLS? = nil, heartbeat: Duration = Defaults.heartbeat,
        connectTimeout: Duration = Defaults.connectTimeout, methodTimeout: Duration = .seconds(10),
        defaultCallTimeout: Duration = .seconds(30), exchangePrefix: String = "on",
        reconnect: ReconnectPolicy = ReconnectPolicy(), maxBufferedOperations: Int = 50_000,
        connectionName: String = ProcessInfo.processInfo.processName, broadcastWindow: Int = Defaults.broadcastWindow
    ) {
        self.endpoints = [Endpoint(host: host, port: port ?? (tls == nil ? 5672 : 5671))]
        self.user = user
        self.password = password
        self.virtualHost = virtualHost
        self.tls = tls
        self.heartbeat = heartbeat
        self.connectTimeout = connectTimeout
        self.methodTimeout = methodTimeout
        self.defaultCallTimeout = defaultCallTimeout
        self.exchangePrefix = exchangePrefix
        self.reconnect = reconnect
        self.maxBufferedOperations = maxBufferedOperations
        self.connectionName = connectionName
        self.broadcastWindow = min(max(0, broadcastWindow), Int(UInt16.max))
    }

    /// Reads the URL from `RACKBUS_AMQP_URL`, or uses ``defaultURL``.
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(BusError) -> BusConfiguration {
        var configuration = try BusConfiguration(url: environment[urlEnvironmentKey] ?? defaultURL)
        try configuration.applyQueueSettings(from: environment)
        return configuration
    }

    /// Reads `RACKBUS_QUEUE_TYPE` (`classic` or `quorum`) and `RACKBUS_DELIVERY_LIMIT` (1…1,000,000).
    public mutating func applyQueueSettings(from environment: [String: String]) throws(BusError) {
        if let text = environment[Self.queueTypeEnvironmentKey], !text.isEmpty {
            guard let type = WorkQueueType(rawValue: text) else {
                throw BusError(
                    code: .invalidConfiguration, message: "\(Self.queueTypeEnvironmentKey) must be classic or quorum, got '\(text)'")
            }
            workQueueType = type
        }
        if let text = environment[Self.deliveryLimitEnvironmentKey], !text.isEmpty {
            guard let limit = Int(text), (1...1_000_000).contains(limit) else {
                throw BusError(
                    code: .invalidConfiguration, message: "\(Self.deliveryLimitEnvironmentKey) must be 1…1000000 deliveries, got '\(text)'")
            }
            deliveryLimit = limit
        }
    }

    /// The arguments a durable work queue named `queue` is declared with: `arguments`, plus for
    /// quorum queues the type, the delivery limit and its dead-letter queue (through the default
    /// exchange, so no exchange beyond the nine is needed).
    public func workQueueArguments(for queue: String, adding arguments: [String: HeaderValue] = [:]) -> [String: HeaderValue] {
        guard workQueueType == .quorum else { return arguments }
        var all = arguments
        all["x-queue-type"] = .string("quorum")
        all["x-delivery-limit"] = .int(Int64(deliveryLimit))
        all["x-dead-letter-exchange"] = .string("")
        all["x-dead-letter-routing-key"] = .string(Self.deadLetterQueue(of: queue))
        return all
    }

    /// Where a quorum work queue's poison messages go.
    public static func deadLetterQueue(of queue: String) -> String { "\(queue).dead-letter" }

    /// Parses an AMQP URI, or several separated by commas (the nodes of a cluster, in the style
    /// of RabbitMQ's clients): every URI after the first adds its host and port, and must agree
    /// with the first on scheme, user, password and vhost. Each URI is in RabbitMQ's form:
    /// `amqp[s]://user:password@host:port/vhost?heartbeat=30&connection_timeout=5000&cacertfile=…&certfile=…&keyfile=…&verify=verify_peer|verify_none&server_name_indication=…`,
    /// plus RackBus's own `broadcast_window=4096` (``broadcastWindow``) and `exchanges=passive`
    /// (``declaresExchanges``).
    /// The vhost is percent-decoded, so `%2F` is `/`; an empty path means the default vhost `/`.
    public init(url text: String) throws(BusError) {
        let uris = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard uris.count > 1 else {
            try self.init(singleURL: text)
            return
        }
        if let empty = uris.firstIndex(where: \.isEmpty) {
            throw BusError(code: .invalidConfiguration, message: "address \(empty + 1) of the URL list is empty")
        }
        try self.init(singleURL: uris[0])
        for uri in uris.dropFirst() {
            let node = try BusConfiguration(singleURL: uri)
            guard node.tls == tls, node.user == user, node.password == password, node.virtualHost == virtualHost else {
                throw BusError(
                    code: .invalidConfiguration,
                    message: "every URL in a list needs the same scheme, user, password and vhost: \(Self.redacted(uri)) differs")
            }
            endpoints.append(node.endpoints[0])
        }
    }

    private init(singleURL text: String) throws(BusError) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            throw BusError(code: .invalidConfiguration, message: "not a URL: \(Self.redacted(text))")
        }
        guard scheme == "amqp" || scheme == "amqps" else {
            throw BusError(code: .invalidConfiguration, message: "unsupported scheme '\(scheme)' (use amqp:// or amqps://)")
        }
        let secure = scheme == "amqps"
        var tls: TLS? = secure ? TLS() : nil
        var heartbeat = Defaults.heartbeat
        var connectTimeout = Defaults.connectTimeout
        var broadcastWindow = Defaults.broadcastWindow
        var declaresExchanges = true
        for item in components.queryItems ?? [] {
            let value = item.value ?? ""
            switch item.name {
            case "heartbeat":
                guard let seconds = Int(value), seconds >= 0, seconds <= 65535 else {
                    throw BusError(code: .invalidConfiguration, message: "heartbeat must be 0…65535 seconds, got '\(value)'")
                }
                heartbeat = .seconds(seconds)
            case "connection_timeout":
                guard let millis = Int(value), millis > 0 else {
                    throw BusError(code: .invalidConfiguration, message: "connection_timeout must be positive milliseconds, got '\(value)'")
                }
                connectTimeout = .milliseconds(millis)
            case "broadcast_window":
                guard let window = Int(value), (0...65535).contains(window) else {
                    throw BusError(code: .invalidConfiguration, message: "broadcast_window must be 0…65535 deliveries, got '\(value)'")
                }
                broadcastWindow = window
            case "exchanges":
                switch value {
                case "declare": declaresExchanges = true
                case "passive": declaresExchanges = false
                default:
                    throw BusError(code: .invalidConfiguration, message: "exchanges must be declare or passive, got '\(value)'")
                }
            case "cacertfile": tls?.caCertificatePath = value
            case "certfile": tls?.clientCertificatePath = value
            case "keyfile": tls?.clientKeyPath = value
            case "verify":
                switch value {
                case "verify_peer": tls?.verifyPeer = true
                case "verify_none":
                    tls?.verifyPeer = false
                    tls?.verifyHostname = false
                default:
                    throw BusError(code: .invalidConfiguration, message: "verify must be verify_peer or verify_none, got '\(value)'")
                }
            case "verify_hostname": tls?.verifyHostname = value == "true"
            default:
                // RabbitMQ's URI spec lists more (channel_max, auth_mechanism); they have safe defaults here.
                break
            }
        }
        let rawPath = components.percentEncodedPath
        let vhostPart = rawPath.hasPrefix("/") ? String(rawPath.dropFirst()) : rawPath
        let vhost = vhostPart.isEmpty ? "/" : (vhostPart.removingPercentEncoding ?? vhostPart)
        if let port = components.port, !(1...65535).contains(port) {
            throw BusError(code: .invalidConfiguration, message: "port \(port) is out of range")
        }
        let host = components.host.flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
        self.init(
            host: host,
            port: components.port,
            user: components.user?.removingPercentEncoding ?? components.user ?? "guest",
            password: components.password?.removingPercentEncoding ?? components.password ?? "guest",
            virtualHost: vhost,
            tls: tls,
            heartbeat: heartbeat,
            connectTimeout: connectTimeout,
            broadcastWindow: broadcastWindow
        )
        self.declaresExchanges = declaresExchanges
    }

    /// The URL with the password hidden, for logs (every address of a list).
    public var redactedURL: String {
        endpoints.map(redactedURL(of:)).joined(separator: ",")
    }

    /// One address's URL with the password hidden.
    public func redactedURL(of endpoint: Endpoint) -> String {
        let scheme = tls == nil ? "amqp" : "amqps"
        let vhost = virtualHost == "/" ? "" : virtualHost.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? virtualHost
        return "\(scheme)://\(user):***@\(endpoint.host):\(endpoint.port)/\(vhost)"
    }

    static func redacted(_ text: String) -> String {
        guard var components = URLComponents(string: text), components.password != nil else { return text }
        components.password = "***"
        return components.string ?? text
    }

    /// The broker-side name of a convention exchange under this configuration's prefix.
    public func name(of exchange: Exchange) -> String {
        exchange.name(prefix: exchangePrefix)
    }
}
