import DHCPService
import NodeProtocol
import Testing

@Suite("DHCP boot file choice (pure)")
struct BootFileChoiceTests {
    let server = IPv4Address("10.9.0.1")!
    var settings: DHCPBootSettings {
        DHCPBootSettings(nextServer: server, httpBootURL: "http://10.9.0.1:9080/common/ipxe.efi")
    }

    @Test("BIOS PXE gets undionly.kpxe, x64 EFI (7 and 9) gets ipxe.efi, over TFTP from next-server")
    func byArchitecture() {
        let bios = BootClient(architecture: 0, vendorClass: "PXEClient:Arch:00000:UNDI:002001")
        #expect(BootFileChoice.choose(client: bios, node: .unknown, settings: settings) == .tftp(server: server, file: "undionly.kpxe"))
        for arch: UInt16 in [7, 9] {
            let efi = BootClient(architecture: arch, vendorClass: "PXEClient:Arch:0000\(arch):UNDI:003016")
            #expect(BootFileChoice.choose(client: efi, node: .unknown, settings: settings) == .tftp(server: server, file: "ipxe.efi"))
        }
        var snp = settings
        snp.efiBootFile = "snponly.efi"
        #expect(
            BootFileChoice.choose(client: BootClient(architecture: 7), node: .unavailable, settings: snp)
                == .tftp(server: server, file: "snponly.efi"))
        #expect(BootFileChoice.choose(client: BootClient(architecture: 6), node: .unknown, settings: settings) == nil, "no 32-bit EFI iPXE")
    }

    @Test("UEFI HTTP boot (type 16 or vendor class HTTPClient) gets an http:// URL")
    func httpBoot() {
        let expected = BootFile.http(url: "http://10.9.0.1:9080/common/ipxe.efi")
        #expect(BootFileChoice.choose(client: BootClient(architecture: 16), node: .unknown, settings: settings) == expected)
        #expect(
            BootFileChoice.choose(client: BootClient(vendorClass: "HTTPClient:Arch:00016:UNDI:003001"), node: .unknown, settings: settings)
                == expected)
        var reply = DHCPPacket.reply(to: Self.discover(), type: .offer, yiaddr: IPv4Address("10.9.0.50")!, serverIdentifier: server)
        BootFileChoice.apply(expected, to: &reply)
        #expect(reply.string(for: .bootfileName) == "http://10.9.0.1:9080/common/ipxe.efi")
        #expect(reply.vendorClassIdentifier == "HTTPClient", "HTTP boot firmware only takes offers that echo HTTPClient")
    }

    @Test("A client that already runs iPXE gets the script: a TFTP file, or an http URL when set so")
    func ipxeScript() {
        let ipxe = BootClient(architecture: 0, vendorClass: "PXEClient:Arch:00000:UNDI:002001", userClass: "iPXE")
        #expect(BootFileChoice.choose(client: ipxe, node: .unknown, settings: settings) == .tftp(server: server, file: "boot.ipxe"))
        var http = settings
        http.ipxeScript = "http://10.9.0.1:9080/api/current/profiles"
        #expect(BootFileChoice.choose(client: ipxe, node: .unknown, settings: http) == .http(url: "http://10.9.0.1:9080/api/current/profiles"))
    }

    @Test("A node that should not network-boot, or an unknown MAC under `ignore`, gets no boot file")
    func noBootFile() {
        let bios = BootClient(architecture: 0)
        #expect(BootFileChoice.choose(client: bios, node: .known(networkBoot: false), settings: settings) == nil)
        #expect(BootFileChoice.choose(client: bios, node: .known(networkBoot: true), settings: settings) != nil)
        var ignoring = settings
        ignoring.unknownNodes = .ignore
        #expect(BootFileChoice.choose(client: bios, node: .unknown, settings: ignoring) == nil)
        #expect(BootFileChoice.choose(client: bios, node: .known(networkBoot: true), settings: ignoring) != nil)
        #expect(BootFileChoice.choose(client: bios, node: .unavailable, settings: ignoring) != nil, "a registry outage does not stop booting")
        var off = settings
        off.unknownNodes = .bootLocal
        #expect(BootFileChoice.choose(client: bios, node: .unknown, settings: off) != nil, "boot-local is told over HTTP")
    }

    @Test("Clients that do not network-boot get nothing; a fixed boot file goes to every client")
    func plainClientsAndFixedFile() {
        let udhcpc = BootClient(vendorClass: "udhcp 1.35.0")
        #expect(BootFileChoice.choose(client: udhcpc, node: .unknown, settings: settings) == nil)
        var fixed = settings
        fixed.fixedBootFile = "monorail.ipxe"
        #expect(BootFileChoice.choose(client: udhcpc, node: .unknown, settings: fixed) == .tftp(server: server, file: "monorail.ipxe"))
        #expect(BootFileChoice.choose(client: udhcpc, node: .known(networkBoot: false), settings: fixed) == nil)
    }

    @Test("Options 93, 60 and 77 are read from the request; clearing removes every boot field")
    func readingAndClearing() {
        var request = Self.discover()
        request.set(.clientArchitecture, bytes: [0x00, 0x07])
        request.setString(.vendorClassIdentifier, to: "PXEClient:Arch:00007:UNDI:003016")
        request.setString(.userClass, to: "iPXE")
        let client = BootClient(request)
        #expect(client.architecture == 7)
        #expect(client.isIPXE)
        #expect(client.isNetworkBootClient)
        var reply = DHCPPacket.reply(to: request, type: .offer, yiaddr: IPv4Address("10.9.0.50")!, serverIdentifier: server)
        BootFileChoice.apply(.tftp(server: server, file: "boot.ipxe"), to: &reply)
        #expect(reply.siaddr == server)
        #expect(reply.file == "boot.ipxe")
        BootFileChoice.apply(nil, to: &reply)
        #expect(reply.siaddr == .zero)
        #expect(reply.file == "")
        #expect(reply.string(for: .bootfileName) == nil)
        #expect(reply.string(for: .tftpServerName) == nil)
    }

    @Test("Boot settings come from the environment; a bad policy or URL is refused naming the variable")
    func environment() throws {
        let configuration = try DHCPConfiguration.fromEnvironment([
            "RACKBUS_DHCP_NEXT_SERVER": "10.9.0.1", "RACKBUS_DHCP_EFI_BOOT_FILE": "snponly.efi", "RACKBUS_UNKNOWN_NODES": "ignore",
        ])
        #expect(configuration.bootSettings.efiBootFile == "snponly.efi")
        #expect(configuration.bootSettings.unknownNodes == .ignore)
        #expect(configuration.httpBootURL == "http://10.9.0.1:9080/common/snponly.efi")
        #expect(throws: DHCPConfigurationError.self) { try DHCPConfiguration.fromEnvironment(["RACKBUS_UNKNOWN_NODES": "sometimes"]) }
        #expect(throws: DHCPConfigurationError.self) { try DHCPConfiguration.fromEnvironment(["RACKBUS_DHCP_HTTP_BOOT_URL": "ftp://x"]) }
    }

    static func discover() -> DHCPPacket {
        var packet = DHCPPacket(op: 1, xid: 42, chaddr: [0x52, 0x54, 0, 0x12, 0x34, 0x56])
        packet.set(.messageType, bytes: [DHCPMessageType.discover.rawValue])
        return packet
    }
}
