import Foundation

public struct TFTPConfigurationError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Everything the TFTP service needs; every field can come from the environment.
public struct TFTPConfiguration: Sendable, Equatable {
    /// IPv4 address the listening socket binds to; each transfer's socket binds to it too.
    public var listenHost: String
    /// 0 picks a free port (tests); ``TFTPService/boundPort`` tells which.
    public var listenPort: Int
    /// The folder files are served from (created if missing).
    public var root: String
    /// Where `undionly.kpxe`, `ipxe.efi` and `snponly.efi` come from when the root has none
    /// (Debian's `ipxe` package); nil disables them.
    public var ipxeDirectory: String?
    public var maximumTransfers: Int
    /// The largest `windowsize` granted (1–64).
    public var maximumWindowSize: Int
    /// The retransmission timeout when the client does not ask for one.
    public var timeout: Duration
    /// Retransmissions of one window before a transfer is abandoned.
    public var retries: Int
    /// `{{bootURL}}` in templates: where nodes reach the HTTP boot service.
    public var bootURL: String
    /// `{{tftpServer}}` in templates: this server's address as nodes see it.
    public var serverAddress: String

    public static let builtInIPXEFiles: Set<String> = ["undionly.kpxe", "ipxe.efi", "snponly.efi"]

    public init(
        listenHost: String = "0.0.0.0", listenPort: Int = 69, root: String = ".rackbus/tftp", ipxeDirectory: String? = "/usr/lib/ipxe",
        maximumTransfers: Int = 256, maximumWindowSize: Int = 32, timeout: Duration = .seconds(1), retries: Int = 5,
        bootURL: String = "http://172.31.128.1:9080", serverAddress: String? = nil
    ) {
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.root = root
        self.ipxeDirectory = ipxeDirectory
        self.maximumTransfers = maximumTransfers
        self.maximumWindowSize = maximumWindowSize
        self.timeout = timeout
        self.retries = retries
        self.bootURL = bootURL
        self.serverAddress = serverAddress ?? Self.host(ofURL: bootURL) ?? "172.31.128.1"
    }

    public enum Key {
        public static let listen = "RACKBUS_TFTP_LISTEN"
        public static let root = "RACKBUS_TFTP_ROOT"
        public static let ipxeDirectory = "RACKBUS_TFTP_IPXE_DIR"
        public static let maximumTransfers = "RACKBUS_TFTP_MAX_TRANSFERS"
        public static let maximumWindow = "RACKBUS_TFTP_MAX_WINDOW"
        public static let timeoutMilliseconds = "RACKBUS_TFTP_TIMEOUT_MS"
        public static let retries = "RACKBUS_TFTP_RETRIES"
        public static let bootURL = "RACKBUS_BOOT_HTTP_URL"
        public static let serverAddress = "RACKBUS_TFTP_SERVER_ADDRESS"
    }

    /// Reads the variables in ``Key`` over `base`. Invalid values are refused with a message
    /// naming the variable. An empty `RACKBUS_TFTP_IPXE_DIR` disables the built-in iPXE files.
    public static func fromEnvironment(_ environment: [String: String], base: TFTPConfiguration = TFTPConfiguration())
        throws(TFTPConfigurationError) -> TFTPConfiguration
    {
        var configuration = base
        func integer(_ key: String, in range: ClosedRange<Int>) throws(TFTPConfigurationError) -> Int? {
            guard let text = environment[key], !text.isEmpty else { return nil }
            guard let value = Int(text), range.contains(value) else {
                throw TFTPConfigurationError("\(key)=\(text) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
        if let text = environment[Key.listen], !text.isEmpty {
            guard let (host, port) = parseHostPort(text) else {
                throw TFTPConfigurationError("\(Key.listen)=\(text) must be IPV4:PORT, e.g. 0.0.0.0:69")
            }
            configuration.listenHost = host
            configuration.listenPort = port
        }
        if let root = environment[Key.root], !root.isEmpty { configuration.root = root }
        if let directory = environment[Key.ipxeDirectory] { configuration.ipxeDirectory = directory.isEmpty ? nil : directory }
        if let value = try integer(Key.maximumTransfers, in: 1...100_000) { configuration.maximumTransfers = value }
        if let value = try integer(Key.maximumWindow, in: 1...OptionNegotiation.maximumWindowSize) { configuration.maximumWindowSize = value }
        if let value = try integer(Key.timeoutMilliseconds, in: 10...255_000) { configuration.timeout = .milliseconds(value) }
        if let value = try integer(Key.retries, in: 0...100) { configuration.retries = value }
        let serverAddressFollowsURL = base.serverAddress == (host(ofURL: base.bootURL) ?? "172.31.128.1")
        if let url = environment[Key.bootURL], !url.isEmpty {
            guard let urlHost = host(ofURL: url), url.hasPrefix("http://") || url.hasPrefix("https://") else {
                throw TFTPConfigurationError("\(Key.bootURL)=\(url) must be an http:// or https:// URL with a host")
            }
            // Templates append paths to it.
            configuration.bootURL = url.hasSuffix("/") ? String(url.dropLast()) : url
            if serverAddressFollowsURL { configuration.serverAddress = urlHost }
        }
        if let address = environment[Key.serverAddress], !address.isEmpty {
            guard address.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":" }) else {
                throw TFTPConfigurationError("\(Key.serverAddress)=\(address) is not a host name or address")
            }
            configuration.serverAddress = address
        }
        return configuration
    }

    /// `HOST:PORT` with an IPv4 host and a port 0–65535.
    static func parseHostPort(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        let host = String(text[..<colon])
        guard let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4, octets.allSatisfy({ octet in octet.count <= 3 && UInt8(octet) != nil }) else { return nil }
        return (host, port)
    }

    static func host(ofURL text: String) -> String? {
        guard let host = URLComponents(string: text)?.host, !host.isEmpty else { return nil }
        return host
    }
}
