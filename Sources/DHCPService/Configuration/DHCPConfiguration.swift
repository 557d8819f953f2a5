import Foundation
import NodeProtocol

/// Everything the DHCP service needs. Defaults suit a lab provisioning network
/// (172.31.128.0/22, as RackHD's own setups used); every field can come from the environment.
public struct DHCPConfiguration: Sendable, Equatable {
    /// Network interface to serve on (`SO_BINDTODEVICE`). The UDP server only starts when this
    /// is set, so that RackBus never answers DHCP on a network it was not pointed at.
    public var interface: String?
    /// Address the UDP socket binds to (0.0.0.0 receives the clients' broadcasts).
    public var listenAddress: IPv4Address
    public var serverPort: UInt16
    public var clientPort: UInt16
    public var pool: LeasePool
    public var routers: [IPv4Address]
    public var dnsServers: [IPv4Address]
    public var domainName: String?
    public var leaseSeconds: UInt32
    /// How long an OFFER reserves its address (RackHD's `reservationTimer`).
    public var offerHoldSeconds: UInt32
    /// How long a DECLINEd address rests before it is offered again.
    public var declineHoldSeconds: UInt32
    /// PXE: the TFTP server (`siaddr` and option 66) and boot file (`file` and option 67).
    public var nextServer: IPv4Address?
    /// One boot file for every client; unset, the file is chosen by client (``BootFileChoice``).
    public var bootFileName: String?
    /// Boot files by client type, and what unknown MACs get (see ``DHCPBootSettings``).
    public var biosBootFile = "undionly.kpxe"
    public var efiBootFile = "ipxe.efi"
    public var ipxeScript = "boot.ipxe"
    public var httpBootURL: String?
    public var unknownNodes = UnknownNodePolicy.discover
    /// SQLite file for leases and pins (`:memory:` keeps them in memory only).
    public var databasePath: String

    public init(
        interface: String? = nil, listenAddress: IPv4Address = .zero, serverPort: UInt16 = 67, clientPort: UInt16 = 68,
        pool: LeasePool = DHCPConfiguration.labPool, routers: [IPv4Address] = [], dnsServers: [IPv4Address] = [],
        domainName: String? = nil, leaseSeconds: UInt32 = 86_400, offerHoldSeconds: UInt32 = 30, declineHoldSeconds: UInt32 = 600,
        nextServer: IPv4Address? = nil, bootFileName: String? = nil, databasePath: String = ".rackbus/dhcp.sqlite"
    ) {
        self.interface = interface
        self.listenAddress = listenAddress
        self.serverPort = serverPort
        self.clientPort = clientPort
        self.pool = pool
        self.routers = routers
        self.dnsServers = dnsServers
        self.domainName = domainName
        self.leaseSeconds = leaseSeconds
        self.offerHoldSeconds = offerHoldSeconds
        self.declineHoldSeconds = declineHoldSeconds
        self.nextServer = nextServer
        self.bootFileName = bootFileName
        self.databasePath = databasePath
    }

    public static let labPool = LeasePool(
        first: IPv4Address("172.31.128.10")!, last: IPv4Address("172.31.131.250")!, subnetMask: IPv4Address("255.255.252.0")!,
        serverAddress: IPv4Address("172.31.128.1")!)

    /// The environment variables read by ``fromEnvironment(_:base:)``.
    public enum Key {
        public static let interface = "RACKBUS_DHCP_INTERFACE"
        public static let serverAddress = "RACKBUS_DHCP_SERVER_ADDRESS"
        public static let pool = "RACKBUS_DHCP_POOL"
        public static let subnetMask = "RACKBUS_DHCP_SUBNET_MASK"
        public static let routers = "RACKBUS_DHCP_ROUTERS"
        public static let dns = "RACKBUS_DHCP_DNS"
        public static let domain = "RACKBUS_DHCP_DOMAIN"
        public static let leaseSeconds = "RACKBUS_DHCP_LEASE_SECONDS"
        public static let nextServer = "RACKBUS_DHCP_NEXT_SERVER"
        public static let bootFile = "RACKBUS_DHCP_BOOT_FILE"
        public static let database = "RACKBUS_DHCP_DATABASE"
        public static let port = "RACKBUS_DHCP_PORT"
        public static let biosBootFile = "RACKBUS_DHCP_BIOS_BOOT_FILE"
        public static let efiBootFile = "RACKBUS_DHCP_EFI_BOOT_FILE"
        public static let ipxeScript = "RACKBUS_DHCP_IPXE_SCRIPT"
        public static let httpBootURL = "RACKBUS_DHCP_HTTP_BOOT_URL"
    }

    /// The settings ``BootFileChoice`` chooses with.
    public var bootSettings: DHCPBootSettings {
        DHCPBootSettings(
            nextServer: nextServer, fixedBootFile: bootFileName, biosBootFile: biosBootFile, efiBootFile: efiBootFile,
            ipxeScript: ipxeScript, httpBootURL: httpBootURL, unknownNodes: unknownNodes)
    }

    /// Reads the `RACKBUS_DHCP_*` variables over `base`. Invalid values are refused with a message
    /// naming the variable.
    public static func fromEnvironment(_ environment: [String: String], base: DHCPConfiguration = DHCPConfiguration())
        throws(DHCPConfigurationError) -> DHCPConfiguration
    {
        var configuration = base
        func address(_ key: String) throws(DHCPConfigurationError) -> IPv4Address? {
            guard let text = environment[key], !text.isEmpty else { return nil }
            guard let value = IPv4Address(text) else { throw DHCPConfigurationError("\(key)=\(text) is not an IPv4 address") }
            return value
        }
        func addresses(_ key: String) throws(DHCPConfigurationError) -> [IPv4Address]? {
            guard let text = environment[key], !text.isEmpty else { return nil }
            var list: [IPv4Address] = []
            for part in text.split(separator: ",") {
                let trimmed = part.trimmingCharacters(in: .whitespaces)
                guard let value = IPv4Address(trimmed) else { throw DHCPConfigurationError("\(key): '\(trimmed)' is not an IPv4 address") }
                list.append(value)
            }
            return list
        }
        if let interface = environment[Key.interface], !interface.isEmpty { configuration.interface = interface }
        if let server = try address(Key.serverAddress) { configuration.pool.serverAddress = server }
        if let mask = try address(Key.subnetMask) { configuration.pool.subnetMask = mask }
        if let range = environment[Key.pool], !range.isEmpty {
            let parts = range.split(separator: "-").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let first = IPv4Address(parts[0]), let last = IPv4Address(parts[1]) else {
                throw DHCPConfigurationError("\(Key.pool)=\(range) must look like 172.31.128.10-172.31.131.250")
            }
            configuration.pool.first = first
            configuration.pool.last = last
        }
        if let routers = try addresses(Key.routers) { configuration.routers = routers }
        if let dns = try addresses(Key.dns) { configuration.dnsServers = dns }
        if let domain = environment[Key.domain], !domain.isEmpty { configuration.domainName = domain }
        if let text = environment[Key.leaseSeconds], !text.isEmpty {
            guard let seconds = UInt32(text), seconds >= 60 else {
                throw DHCPConfigurationError("\(Key.leaseSeconds)=\(text) must be at least 60")
            }
            configuration.leaseSeconds = seconds
        }
        if let next = try address(Key.nextServer) { configuration.nextServer = next }
        if let file = environment[Key.bootFile], !file.isEmpty { configuration.bootFileName = file }
        if let file = environment[Key.biosBootFile], !file.isEmpty { configuration.biosBootFile = file }
        if let file = environment[Key.efiBootFile], !file.isEmpty { configuration.efiBootFile = file }
        if let script = environment[Key.ipxeScript], !script.isEmpty { configuration.ipxeScript = script }
        if let url = environment[Key.httpBootURL], !url.isEmpty {
            guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
                throw DHCPConfigurationError("\(Key.httpBootURL)=\(url) must be an http:// or https:// URL")
            }
            configuration.httpBootURL = url
        } else if let base = environment[BootURL.environmentKey].flatMap({ $0.isEmpty ? nil : BootURL.fromEnvironment(environment) })
            ?? configuration.nextServer.map({ "http://\($0):9080" })
        {
            // UEFI HTTP boot clients fetch iPXE from the HTTP service's static files.
            configuration.httpBootURL = base + "/common/" + configuration.efiBootFile
        }
        guard let policy = UnknownNodePolicy.fromEnvironment(environment) else {
            throw DHCPConfigurationError(
                "\(UnknownNodePolicy.environmentKey)=\(environment[UnknownNodePolicy.environmentKey] ?? "") must be one of "
                    + UnknownNodePolicy.allCases.map(\.rawValue).joined(separator: ", "))
        }
        configuration.unknownNodes = policy
        if let database = environment[Key.database], !database.isEmpty { configuration.databasePath = database }
        if let text = environment[Key.port], !text.isEmpty {
            guard let port = UInt16(text), port > 0 else { throw DHCPConfigurationError("\(Key.port)=\(text) is not a port") }
            configuration.serverPort = port
        }
        try configuration.validate()
        return configuration
    }

    public func validate() throws(DHCPConfigurationError) {
        try pool.validate()
        for file in [bootFileName, biosBootFile, efiBootFile, ipxeScript].compactMap({ $0 }) where file.utf8.count > 127 {
            throw DHCPConfigurationError("the boot file name \(file) is longer than 127 bytes")
        }
        if leaseSeconds < 60 { throw DHCPConfigurationError("the lease time must be at least 60 seconds") }
    }
}
