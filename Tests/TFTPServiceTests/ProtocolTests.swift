import NIOCore
import Testing

@testable import TFTPService

@Suite("TFTP packets, options, names and settings (pure)")
struct ProtocolTests {
    func bytes(_ values: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: values) }

    @Test("every packet kind survives encode then parse")
    func roundTrip() throws {
        let packets: [TFTPPacket] = [
            .readRequest(TFTPRequest(fileName: "pxe/undionly.kpxe", mode: "octet", options: [TFTPOption("blksize", "1468")])),
            .writeRequest(TFTPRequest(fileName: "up.bin", mode: "netascii")),
            .data(block: 65535, payload: ByteBuffer(bytes: [1, 2, 3])),
            .data(block: 0, payload: ByteBuffer()),
            .acknowledgement(block: 7),
            .error(code: 1, message: "file not found"),
            .optionAcknowledgement([TFTPOption("tsize", "42"), TFTPOption("windowsize", "8")]),
        ]
        for packet in packets {
            #expect(try TFTPPacket.parse(packet.encoded()) == packet)
        }
    }

    @Test("the wire form of a read request is RFC 1350's: opcode, name, NUL, mode, NUL, then option pairs")
    func requestWireForm() {
        let encoded = TFTPPacket.readRequest(TFTPRequest(fileName: "a", mode: "octet", options: [TFTPOption("tsize", "0")])).encoded()
        #expect(Array(encoded.readableBytesView) == [0, 1, 97, 0] + Array("octet".utf8) + [0] + Array("tsize".utf8) + [0, 48, 0])
    }

    @Test("datagrams that are not packets are errors, never traps")
    func malformed() {
        #expect(throws: TFTPPacketError.truncated) { try TFTPPacket.parse(bytes([])) }
        #expect(throws: TFTPPacketError.truncated) { try TFTPPacket.parse(bytes([0])) }
        #expect(throws: TFTPPacketError.truncated) { try TFTPPacket.parse(bytes([0, 4, 1])) }
        #expect(throws: TFTPPacketError.unknownOpcode(9)) { try TFTPPacket.parse(bytes([0, 9, 0, 0])) }
        #expect(throws: TFTPPacketError.malformedRequest) { try TFTPPacket.parse(bytes([0, 1, 97, 98])) }
        #expect(throws: TFTPPacketError.malformedRequest) { try TFTPPacket.parse(bytes([0, 1, 97, 0, 111])) }
        // Random garbage of every length parses or throws.
        for length in 0..<64 {
            _ = try? TFTPPacket.parse(ByteBuffer(bytes: pattern(length, seed: UInt32(length + 1))))
        }
    }

    @Test("padding NULs and an unpaired last option are ignored")
    func lenientOptions() throws {
        let packet = try TFTPPacket.parse(
            bytes([0, 1, 97, 0, 111, 0, 0, 0] + Array("blksize".utf8) + [0, 56, 0] + Array("tsize".utf8) + [0]))
        guard case .readRequest(let request) = packet else { Issue.record("not a read request"); return }
        #expect(request.options == [TFTPOption("blksize", "8")])
    }

    @Test("blksize: 1468 granted, 0 ignored (512 used), 70000 lowered to 65464")
    func blockSize() {
        let granted = OptionNegotiation.negotiate([TFTPOption("blksize", "1468")], transferSize: 10, maximumWindowSize: 32)
        #expect(granted.blockSize == 1468)
        #expect(granted.acknowledged == [TFTPOption("blksize", "1468")])
        let zero = OptionNegotiation.negotiate([TFTPOption("blksize", "0")], transferSize: 10, maximumWindowSize: 32)
        #expect(zero.blockSize == 512)
        #expect(zero.acknowledged.isEmpty)
        let huge = OptionNegotiation.negotiate([TFTPOption("BLKSIZE", "70000")], transferSize: 10, maximumWindowSize: 32)
        #expect(huge.blockSize == 65464)
        #expect(huge.acknowledged == [TFTPOption("BLKSIZE", "65464")])
        #expect(OptionNegotiation.negotiate([TFTPOption("blksize", "7")], transferSize: 1, maximumWindowSize: 32).acknowledged.isEmpty)
        #expect(OptionNegotiation.negotiate([TFTPOption("blksize", "x")], transferSize: 1, maximumWindowSize: 32).acknowledged.isEmpty)
    }

    @Test("windowsize: 0 ignored (1 used), values above the maximum lowered to it")
    func windowSize() {
        let zero = OptionNegotiation.negotiate([TFTPOption("windowsize", "0")], transferSize: 10, maximumWindowSize: 32)
        #expect(zero.windowSize == 1)
        #expect(zero.acknowledged.isEmpty)
        let capped = OptionNegotiation.negotiate([TFTPOption("windowsize", "100")], transferSize: 10, maximumWindowSize: 32)
        #expect(capped.windowSize == 32)
        #expect(capped.acknowledged == [TFTPOption("windowsize", "32")])
        #expect(OptionNegotiation.negotiate([TFTPOption("windowsize", "16")], transferSize: 10, maximumWindowSize: 8).windowSize == 8)
        #expect(OptionNegotiation.negotiate([TFTPOption("windowsize", "4")], transferSize: 10, maximumWindowSize: 32).windowSize == 4)
    }

    @Test("timeout echoed when 1–255, else left out; tsize answered with the size; unknown options left out")
    func otherOptions() {
        let result = OptionNegotiation.negotiate(
            [TFTPOption("timeout", "5"), TFTPOption("tsize", "0"), TFTPOption("multicast", ""), TFTPOption("tsize", "0")],
            transferSize: 1234, maximumWindowSize: 32)
        #expect(result.timeoutSeconds == 5)
        #expect(result.acknowledged == [TFTPOption("timeout", "5"), TFTPOption("tsize", "1234")])
        #expect(OptionNegotiation.negotiate([TFTPOption("timeout", "0")], transferSize: 1, maximumWindowSize: 32).acknowledged.isEmpty)
        #expect(OptionNegotiation.negotiate([TFTPOption("timeout", "256")], transferSize: 1, maximumWindowSize: 32).acknowledged.isEmpty)
        #expect(OptionNegotiation.negotiate([], transferSize: 1, maximumWindowSize: 32) == OptionNegotiation.Result())
    }

    @Test("netascii: LF becomes CR LF, CR becomes CR NUL, and the count matches")
    func netascii() {
        let text: [UInt8] = Array("a\nb\rc\r\n".utf8)
        var output = ByteBuffer()
        Netascii.encode(ByteBuffer(bytes: text), into: &output)
        #expect(Array(output.readableBytesView) == Array("a\r\nb\r\0c\r\0\r\n".utf8))
        #expect(Netascii.encodedCount(of: text) == output.readableBytes)
        #expect(TransferMode(requestMode: "NetASCII") == .netascii)
        #expect(TransferMode(requestMode: "mail") == nil)
    }

    @Test("names: a leading / is relative to the root; .., NUL, non-UTF-8, empty and over-long names are refused")
    func fileNames() throws {
        #expect(try FileNamePolicy.components(of: Array("/etc/passwd".utf8)) == ["etc", "passwd"])
        #expect(try FileNamePolicy.components(of: Array("./pxe//a.bin".utf8)) == ["pxe", "a.bin"])
        #expect(throws: FileNamePolicy.Refusal.parentDirectory) { try FileNamePolicy.components(of: Array("../x".utf8)) }
        #expect(throws: FileNamePolicy.Refusal.parentDirectory) { try FileNamePolicy.components(of: Array("a/../../x".utf8)) }
        #expect(throws: FileNamePolicy.Refusal.containsNUL) { try FileNamePolicy.components(of: [97, 0, 98]) }
        #expect(throws: FileNamePolicy.Refusal.notUTF8) { try FileNamePolicy.components(of: [0xff, 0xfe]) }
        #expect(throws: FileNamePolicy.Refusal.empty) { try FileNamePolicy.components(of: Array("/".utf8)) }
        #expect(throws: FileNamePolicy.Refusal.tooLong) { try FileNamePolicy.components(of: [UInt8](repeating: 97, count: 10_000)) }
    }

    @Test("the listening socket: WRQ → 2, unknown opcode and stray DATA/ACK → 4, unknown mode → 4, short packets and ERRORs dropped")
    func requestDecisions() {
        func decide(_ packet: TFTPPacket) -> RequestDecision { RequestDecision.decide(packet.encoded()) }
        #expect(
            decide(.writeRequest(TFTPRequest(fileName: "x", mode: "octet")))
                == .refuse(.accessViolation, message: "write requests are not accepted", metricLabel: "write_request", file: "x"))
        guard case .refuse(.illegalOperation, _, "unknown_opcode", nil) = RequestDecision.decide(bytes([0, 99, 1])) else {
            Issue.record("unknown opcode not refused")
            return
        }
        guard case .refuse(.illegalOperation, _, "unexpected_packet", nil) = decide(.acknowledgement(block: 1)) else {
            Issue.record("stray ACK not refused")
            return
        }
        guard case .refuse(.illegalOperation, _, "unknown_mode", _) = decide(.readRequest(TFTPRequest(fileName: "x", mode: "mail"))) else {
            Issue.record("mail mode not refused")
            return
        }
        #expect(RequestDecision.decide(bytes([1])) == .drop(metricLabel: "truncated"))
        #expect(decide(.error(code: 0, message: "x")) == .drop(metricLabel: "unexpected_error"))
        #expect(
            decide(.readRequest(TFTPRequest(fileName: "/a/b", mode: "OCTET")))
                == .read(ReadRequest(components: ["a", "b"], mode: .octet, options: [], displayName: "/a/b")))
    }

    @Test("templates render as text: & and < stay as they are")
    func templates() {
        let rendered = TemplateRenderer.render(
            BootTemplate.text, bootURL: "http://10.0.0.1:9080", tftpServer: "10.0.0.1", clientAddress: "10.0.0.9")
        #expect(
            rendered == """
                #!ipxe
                # RackBus: ask the HTTP boot service what this machine should boot.
                :retry
                chain --autofree http://10.0.0.1:9080/api/current/profiles?macs=${net0/mac:hexhyp}&ips=${net0/ip} || goto wait
                exit
                :wait
                echo RackBus: the profile service did not answer; retrying in 3 s
                sleep 3
                goto retry

                """)
        #expect(
            TemplateRenderer.render("{{clientAddress}} <{{tftpServer}}>&", bootURL: "", tftpServer: "a&b", clientAddress: "1.2.3.4")
                == "1.2.3.4 <a&b>&")
    }

    @Test("settings from the environment, and invalid values refused naming the variable")
    func configuration() throws {
        let defaults = try TFTPConfiguration.fromEnvironment([:])
        #expect(defaults.listenHost == "0.0.0.0")
        #expect(defaults.listenPort == 69)
        #expect(defaults.root == ".rackbus/tftp")
        #expect(defaults.ipxeDirectory == "/usr/lib/ipxe")
        #expect(defaults.maximumTransfers == 256)
        #expect(defaults.maximumWindowSize == 32)
        #expect(defaults.timeout == .seconds(1))
        #expect(defaults.retries == 5)
        #expect(defaults.bootURL == "http://172.31.128.1:9080")
        #expect(defaults.serverAddress == "172.31.128.1")
        let set = try TFTPConfiguration.fromEnvironment([
            "RACKBUS_TFTP_LISTEN": "127.0.0.1:6969", "RACKBUS_TFTP_IPXE_DIR": "", "RACKBUS_TFTP_MAX_WINDOW": "8",
            "RACKBUS_TFTP_TIMEOUT_MS": "250", "RACKBUS_TFTP_RETRIES": "2", "RACKBUS_BOOT_HTTP_URL": "http://10.1.2.3:8080/",
            "RACKBUS_TFTP_MAX_TRANSFERS": "10",
        ])
        #expect(set.listenHost == "127.0.0.1")
        #expect(set.listenPort == 6969)
        #expect(set.ipxeDirectory == nil)
        #expect(set.maximumWindowSize == 8)
        #expect(set.timeout == .milliseconds(250))
        #expect(set.retries == 2)
        #expect(set.maximumTransfers == 10)
        #expect(set.bootURL == "http://10.1.2.3:8080")
        #expect(set.serverAddress == "10.1.2.3")
        #expect(try TFTPConfiguration.fromEnvironment(["RACKBUS_TFTP_SERVER_ADDRESS": "tftp.lab"]).serverAddress == "tftp.lab")
        let invalid: [(String, String)] = [
            ("RACKBUS_TFTP_LISTEN", "69"), ("RACKBUS_TFTP_LISTEN", "host:69"), ("RACKBUS_TFTP_LISTEN", "0.0.0.0:70000"),
            ("RACKBUS_TFTP_MAX_WINDOW", "0"), ("RACKBUS_TFTP_MAX_WINDOW", "65"), ("RACKBUS_TFTP_MAX_TRANSFERS", "0"),
            ("RACKBUS_TFTP_TIMEOUT_MS", "x"), ("RACKBUS_TFTP_RETRIES", "-1"), ("RACKBUS_BOOT_HTTP_URL", "ftp://x"),
            ("RACKBUS_TFTP_SERVER_ADDRESS", "a b"),
        ]
        for (key, value) in invalid {
            do {
                _ = try TFTPConfiguration.fromEnvironment([key: value])
                Issue.record("\(key)=\(value) accepted")
            } catch {
                #expect(error.description.contains(key))
            }
        }
    }
}
