import NodeProtocol

/// What a booting client says about itself in its DHCP request.
public struct BootClient: Sendable, Equatable {
    /// Option 93 (RFC 4578): 0 BIOS, 6 32-bit EFI, 7 and 9 x64 EFI, 16 x64 UEFI HTTP boot.
    public var architecture: UInt16?
    /// Option 60: `PXEClient:Arch:00000:UNDI:002001` from PXE firmware, `HTTPClient:…` from UEFI HTTP boot.
    public var vendorClass: String?
    /// Option 77: iPXE sends `iPXE`, which means it already runs iPXE and wants a script.
    public var userClass: String?

    public init(architecture: UInt16? = nil, vendorClass: String? = nil, userClass: String? = nil) {
        self.architecture = architecture
        self.vendorClass = vendorClass
        self.userClass = userClass
    }

    public init(_ request: DHCPPacket) {
        self.init(
            architecture: request.options[.clientArchitecture].flatMap { $0.count >= 2 ? UInt16($0[0]) << 8 | UInt16($0[1]) : nil },
            vendorClass: request.vendorClassIdentifier,
            userClass: request.string(for: .userClass))
    }

    public var isIPXE: Bool { userClass?.contains("iPXE") ?? false }
    public var isHTTPBoot: Bool { architecture == 16 || (vendorClass?.hasPrefix("HTTPClient") ?? false) }
    /// Whether it asks to boot from the network at all (a PXE ROM, UEFI HTTP boot or iPXE).
    public var isNetworkBootClient: Bool {
        isIPXE || isHTTPBoot || architecture != nil || (vendorClass?.hasPrefix("PXEClient") ?? false)
    }
}

/// What the node registry says about the client's MAC.
public enum BootNodeStatus: Sendable, Equatable {
    /// A registered node; `networkBoot` is its boot settings' say (true unless turned off).
    case known(networkBoot: Bool)
    case unknown
    /// The registry did not answer in time: boot anyway and let the HTTP service decide.
    case unavailable
}

/// Where a client's boot program comes from.
public enum BootFile: Sendable, Equatable {
    case tftp(server: IPv4Address, file: String)
    case http(url: String)
}

/// The DHCP boot settings (see the README's configuration table).
public struct DHCPBootSettings: Sendable, Equatable {
    /// The TFTP server (`siaddr`, option 66). Without it nothing is network-booted over TFTP.
    public var nextServer: IPv4Address?
    /// One boot file for every client, whatever it is (the setting RackBus had before it chose by client).
    public var fixedBootFile: String?
    /// For PXE firmware on BIOS machines (option 93 type 0).
    public var biosBootFile: String
    /// For x64 UEFI PXE (types 7 and 9): `ipxe.efi`, or `snponly.efi` for NICs whose UNDI iPXE lacks.
    public var efiBootFile: String
    /// For clients that already run iPXE: a TFTP file name (`boot.ipxe`) or an `http://` URL.
    public var ipxeScript: String
    /// For UEFI HTTP boot (type 16): an `http://` URL of an EFI program.
    public var httpBootURL: String?
    public var unknownNodes: UnknownNodePolicy

    public init(
        nextServer: IPv4Address? = nil, fixedBootFile: String? = nil, biosBootFile: String = "undionly.kpxe", efiBootFile: String = "ipxe.efi",
        ipxeScript: String = "boot.ipxe", httpBootURL: String? = nil, unknownNodes: UnknownNodePolicy = .discover
    ) {
        self.nextServer = nextServer
        self.fixedBootFile = fixedBootFile
        self.biosBootFile = biosBootFile
        self.efiBootFile = efiBootFile
        self.ipxeScript = ipxeScript
        self.httpBootURL = httpBootURL
        self.unknownNodes = unknownNodes
    }

    /// Whether any client could get a boot file, so whether the registry is worth asking.
    public var isEnabled: Bool { nextServer != nil || httpBootURL != nil || ipxeScript.hasPrefix("http") }
}

/// Chooses a client's boot file, as RackHD's on-dhcp-proxy and Tinkerbell's smee do. Pure.
public enum BootFileChoice {
    public static func choose(client: BootClient, node: BootNodeStatus, settings: DHCPBootSettings) -> BootFile? {
        // A node told not to network-boot, or an unknown one under `ignore`, gets an address only.
        switch node {
        case .known(networkBoot: false): return nil
        case .unknown where settings.unknownNodes == .ignore: return nil
        default: break
        }
        func tftp(_ file: String) -> BootFile? { settings.nextServer.map { .tftp(server: $0, file: file) } }
        if let fixed = settings.fixedBootFile { return tftp(fixed) }
        guard client.isNetworkBootClient else { return nil }
        if client.isIPXE {
            return settings.ipxeScript.hasPrefix("http://") || settings.ipxeScript.hasPrefix("https://")
                ? .http(url: settings.ipxeScript) : tftp(settings.ipxeScript)
        }
        if client.isHTTPBoot { return settings.httpBootURL.map { .http(url: $0) } }
        switch client.architecture {
        case nil, 0: return tftp(settings.biosBootFile)
        case 7, 9: return tftp(settings.efiBootFile)
        // 32-bit EFI and the rest: Debian ships no iPXE for them.
        default: return nil
        }
    }

    /// Writes the choice into a reply: `siaddr`, `file` and options 66/67, or clears them.
    public static func apply(_ choice: BootFile?, to reply: inout DHCPPacket) {
        switch choice {
        case .tftp(let server, let file):
            reply.siaddr = server
            reply.setString(.tftpServerName, to: server.description)
            reply.file = file
            reply.setString(.bootfileName, to: file)
        case .http(let url):
            // UEFI HTTP boot only takes an offer that echoes vendor class HTTPClient; iPXE ignores it.
            reply.file = url.utf8.count <= 127 ? url : ""
            reply.setString(.bootfileName, to: url)
            reply.setString(.vendorClassIdentifier, to: "HTTPClient")
        case nil:
            reply.siaddr = .zero
            reply.file = ""
            reply.removeOption(.tftpServerName)
            reply.removeOption(.bootfileName)
        }
    }
}
