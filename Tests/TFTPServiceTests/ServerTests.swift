import BusCore
import BusTestSupport
import NIOCore
import NodeProtocol
import Testing

@testable import TFTPService

/// The real server on 127.0.0.1 with real UDP sockets.
@Suite("TFTP over real UDP sockets", .serialized, .timeLimit(.minutes(3)))
struct ServerTests {
    @Test("small and multi-block files arrive byte-exact at blksize 512 and 1468, windowsize 1, 8 and 32")
    func byteExact() async throws {
        let root = try await Fixture.make()
        defer { Task { await root.remove() } }
        let small = pattern(100, seed: 3)
        let large = pattern(300_000, seed: 4)
        let exact = pattern(512 * 40, seed: 5)
        try await root.write("small.bin", small)
        try await root.write("dir/large.bin", large)
        try await root.write("exact.bin", exact)
        try await withTFTPServer(root: root) { _, port, _ in
            let plain = try await download("small.bin", from: port)
            #expect(plain.completed)
            #expect(plain.data == small)
            #expect(plain.optionAcknowledgement == nil)
            for blockSize in [512, 1468] {
                for windowSize in [1, 8, 32] {
                    let options = [TFTPOption("blksize", "\(blockSize)"), TFTPOption("windowsize", "\(windowSize)")]
                    let got = try await download("/dir/large.bin", from: port, options: options)
                    #expect(got.completed, "blksize \(blockSize) windowsize \(windowSize)")
                    #expect(byteDifference(got.data, large) == nil, "blksize \(blockSize) windowsize \(windowSize)")
                    #expect(got.optionValues == ["blksize": "\(blockSize)", "windowsize": "\(windowSize)"])
                }
            }
            // A multiple of blksize ends with an empty block.
            let multiple = try await download("exact.bin", from: port)
            #expect(byteDifference(multiple.data, exact) == nil)
            #expect(multiple.blocksReceived.count == 41)
        }
    }

    @Test("tsize is answered with the file's size; netascii converts line ends and reports the converted size")
    func transferSize() async throws {
        let root = try await Fixture.make()
        defer { Task { await root.remove() } }
        try await root.write("text.txt", Array("one\ntwo\r\n".utf8))
        try await withTFTPServer(root: root) { _, port, _ in
            let octet = try await download("text.txt", from: port, options: [TFTPOption("tsize", "0")])
            #expect(octet.optionValues["tsize"] == "9")
            #expect(octet.data == Array("one\ntwo\r\n".utf8))
            let text = try await download("text.txt", from: port, mode: "netascii", options: [TFTPOption("tsize", "0")])
            #expect(text.data == Array("one\r\ntwo\r\0\r\n".utf8))
            #expect(text.optionValues["tsize"] == "12")
        }
    }

    @Test("block numbers wrap past 65535 and the file still arrives whole")
    func wrapAround() async throws {
        let root = try await Fixture.make()
        defer { Task { await root.remove() } }
        let content = pattern(8 * 70_000 + 3, seed: 6)
        try await root.write("wrap.bin", content)
        // 70,000 windows of tiny blocks: under a full test run on two cores, the test's client can
        // stall for longer than the usual test budget (3 retransmissions 300 ms apart), and the
        // server gives up (a run failed so). The wrap is what this test is about, not the budget.
        try await withTFTPServer(
            root: root,
            configure: {
                $0.retries = 10; $0.timeout = .seconds(1)
            }
        ) { _, port, _ in
            let got = try await download("wrap.bin", from: port, options: [TFTPOption("blksize", "8"), TFTPOption("windowsize", "32")])
            #expect(got.completed)
            #expect(byteDifference(got.data, content) == nil)
            #expect(got.blocksReceived.contains(0))
        }
    }

    @Test("each transfer answers from a new port, not the listening one")
    func newPortPerTransfer() async throws {
        let root = try await Fixture.make()
        defer { Task { await root.remove() } }
        try await root.write("a.bin", pattern(1000))
        try await withTFTPServer(root: root) { _, port, _ in
            let first = try await download("a.bin", from: port)
            let second = try await download("a.bin", from: port)
            #expect(first.completed && second.completed)
            #expect(first.serverPort != port)
            #expect(second.serverPort != port)
            #expect(first.serverPort != second.serverPort)
        }
    }

    @Test("a lost ACK makes the server retransmit after its timeout, and the transfer completes")
    func retransmission() async throws {
        let root = try await Fixture.make()
        defer { Task { await root.remove() } }
        let content = pattern(512 * 5 + 10)
        try await root.write("r.bin", content)
        try await withTFTPServer(root: root) { service, port, _ in
            let got = try await download("r.bin", from: port, skipAcknowledgementOf: [2, 6])
            #expect(got.completed)
            #expect(byteDifference(got.data, content) == nil)
            #expect(got.blocksReceived.filter { $0 == 2 }.count == 2)
            try await eventually { service.statistics.retransmittedBlocks >= 2 }
        }
    }

    @Test("a duplicate ACK gets no duplicate DATA (Sorcerer's Apprentice)")
    func duplicateAcknowledgement() async throws {
        let root = try await Fixture.make()
        defer { Task { await root.remove() } }
        try await root.write("d.bin", pattern(512 * 4))
        try await withTFTPServer(root: root, configure: { $0.timeout = .seconds(5) }) { _, port, _ in
            let socket = try await TestSocket.open()
            try await socket.send(
                .readRequest(TFTPRequest(fileName: "d.bin", mode: "octet")), to: SocketAddress(ipAddress: "127.0.0.1", port: port))
            let first = try #require(await socket.receive())
            #expect(try TFTPPacket.parse(first.data).opcode == .data)
            try await socket.send(.acknowledgement(block: 1), to: first.remoteAddress)
            let second = try #require(await socket.receive())
            guard case .data(block: 2, _) = try TFTPPacket.parse(second.data) else {
                Issue.record("expected block 2")
                return
            }
            // ACK 1 again, twice: nothing may come back (the timeout is 5 s, far away).
            try await socket.send(.acknowledgement(block: 1), to: first.remoteAddress)
            try await socket.send(.acknowledgement(block: 1), to: first.remoteAddress)
            #expect(await socket.drain(for: .milliseconds(500)).isEmpty)
            try await socket.send(.acknowledgement(block: 2), to: first.remoteAddress)
            let third = try #require(await socket.receive())
            guard case .data(block: 3, _) = try TFTPPacket.parse(third.data) else {
                Issue.record("expected block 3")
                return
            }
            await socket.close()
        }
    }

    @Test("a write request gets error 2; a missing file error 1; a packet from another port error 5")
    func refusals() async throws {
        let root = try await Fixture.make()
        defer { Task { await root.remove() } }
        try await root.write("a.bin", pattern(5000))
        try await withTFTPServer(root: root) { _, port, _ in
            let server = try SocketAddress(ipAddress: "127.0.0.1", port: port)
            let socket = try await TestSocket.open()
            try await socket.send(.writeRequest(TFTPRequest(fileName: "up.bin", mode: "octet")), to: server)
            let refusal = try #require(await socket.receive())
            #expect(try TFTPPacket.parse(refusal.data) == .error(code: 2, message: "write requests are not accepted"))
            let missing = try await download("nothing-here.bin", from: port)
            #expect(missing.error?.code == 1)
            // A stranger writing to a transfer's port is told error 5; the transfer goes on.
            try await socket.send(.readRequest(TFTPRequest(fileName: "a.bin", mode: "octet")), to: server)
            let data = try #require(await socket.receive())
            let stranger = try await TestSocket.open()
            try await stranger.send(.acknowledgement(block: 1), to: data.remoteAddress)
            let told = try #require(await stranger.receive())
            #expect(try TFTPPacket.parse(told.data) == .error(code: 5, message: "unknown transfer ID"))
            try await socket.send(.acknowledgement(block: 1), to: data.remoteAddress)
            guard case .data(block: 2, _) = try TFTPPacket.parse(try #require(await socket.receive()).data) else {
                Issue.record("the transfer did not go on")
                return
            }
            await socket.close()
            await stranger.close()
        }
    }

    @Test("names that leave the root are refused and nothing outside it is sent")
    func confinement() async throws {
        let outside = try await Fixture.make()
        let root = try await Fixture.make()
        defer {
            Task {
                await root.remove()
                await outside.remove()
            }
        }
        let secret = Array("SECRET-OUTSIDE-THE-ROOT".utf8)
        try await outside.write("secret.txt", secret)
        try await root.write("inside.txt", Array("inside".utf8))
        try await root.symlink("escape.txt", to: outside.path("secret.txt"))
        try await root.symlink("escape-dir", to: outside.directory)
        try await root.symlink("fine.txt", to: root.path("inside.txt"))
        try await withTFTPServer(root: root) { service, port, _ in
            let relativeEscape = outside.directory.split(separator: "/").map { _ in ".." }.joined(separator: "/")
            let attempts: [(String, UInt16)] = [
                ("../" + outside.directory.split(separator: "/").last! + "/secret.txt", 2),
                (relativeEscape + outside.path("secret.txt"), 2),
                ("dir/../../secret.txt", 2),
                (outside.path("secret.txt"), 1),  // a leading / is relative to the root: not there
                ("escape.txt", 2),
                ("escape-dir/secret.txt", 2),
                (String(repeating: "a", count: 10_000), 2),
            ]
            for (name, code) in attempts {
                let got = try await download(name, from: port)
                #expect(got.error?.code == code, "\(name.prefix(80))")
                #expect(got.data.isEmpty)
            }
            // A NUL in the name ends it early on the wire: "inside.txt\0x" asks for inside.txt with mode "x".
            let socket = try await TestSocket.open()
            var packet = ByteBuffer(
                bytes: [0, 1] + Array("escape.txt".utf8) + [0] + Array("secret".utf8) + [0] + Array("octet".utf8) + [0])
            try await socket.send(packet, to: SocketAddress(ipAddress: "127.0.0.1", port: port))
            let answer = try #require(await socket.receive())
            #expect(try TFTPPacket.parse(answer.data).opcode == .error)
            packet.clear()
            await socket.close()
            // A symlink that stays inside the root is served.
            let fine = try await download("fine.txt", from: port)
            #expect(fine.data == Array("inside".utf8))
            try await eventually { service.statistics.bytesSent == 6 }
        }
    }

    @Test("malformed packets and unknown opcodes are answered or dropped, and the server still serves")
    func malformed() async throws {
        let root = try await Fixture.make()
        defer { Task { await root.remove() } }
        try await root.write("a.bin", pattern(700))
        try await withTFTPServer(root: root) { service, port, _ in
            let server = try SocketAddress(ipAddress: "127.0.0.1", port: port)
            let socket = try await TestSocket.open()
            try await socket.send(ByteBuffer(bytes: [0, 42, 1, 2]), to: server)
            #expect(try TFTPPacket.parse(try #require(await socket.receive()).data).opcode == .error)
            try await socket.send(ByteBuffer(bytes: [0, 1, 97, 98]), to: server)  // no terminators
            #expect(try TFTPPacket.parse(try #require(await socket.receive()).data) == .error(code: 4, message: "malformed request"))
            try await socket.send(.acknowledgement(block: 3), to: server)
            #expect(try TFTPPacket.parse(try #require(await socket.receive()).data).opcode == .error)
            try await socket.send(ByteBuffer(bytes: [7]), to: server)
            try await socket.send(ByteBuffer(bytes: []), to: server)
            try await socket.send(.error(code: 0, message: "hello"), to: server)
            for seed in 1...200 {
                try await socket.send(ByteBuffer(bytes: pattern(Int(seed % 40), seed: UInt32(seed))), to: server)
            }
            _ = await socket.drain(for: .milliseconds(300))
            await socket.close()
            #expect(service.statistics.invalidPackets >= 6)
            let got = try await download("a.bin", from: port)
            #expect(byteDifference(got.data, pattern(700)) == nil)
        }
    }

    @Test("blksize 0 and windowsize 0 are left out of the OACK; blksize 70000 is lowered to 65464")
    func outOfRangeOptions() async throws {
        let root = try await Fixture.make()
        defer { Task { await root.remove() } }
        let content = pattern(200_000, seed: 9)
        try await root.write("o.bin", content)
        try await withTFTPServer(root: root) { _, port, _ in
            let zero = try await download(
                "o.bin", from: port, options: [TFTPOption("blksize", "0"), TFTPOption("windowsize", "0"), TFTPOption("tsize", "0")])
            #expect(zero.optionValues == ["tsize": "200000"])
            #expect(byteDifference(zero.data, content) == nil)
            let huge = try await download("o.bin", from: port, options: [TFTPOption("blksize", "70000")])
            #expect(huge.optionValues == ["blksize": "65464"])
            #expect(byteDifference(huge.data, content) == nil)
            // Only invalid options: no OACK at all, data at once with 512-byte blocks.
            let none = try await download("o.bin", from: port, options: [TFTPOption("windowsize", "0")])
            #expect(none.optionAcknowledgement == nil)
            #expect(byteDifference(none.data, content) == nil)
        }
    }

    @Test("a flood of requests over the limit gets 'server busy', and the server serves afterwards")
    func flood() async throws {
        let root = try await Fixture.make()
        defer { Task { await root.remove() } }
        try await root.write("f.bin", pattern(4000))
        try await withTFTPServer(
            root: root,
            configure: {
                $0.maximumTransfers = 16
                $0.timeout = .milliseconds(100)
                $0.retries = 1
            }
        ) { service, port, _ in
            let server = try SocketAddress(ipAddress: "127.0.0.1", port: port)
            var sockets: [TestSocket] = []
            for _ in 0..<40 { sockets.append(try await TestSocket.open()) }
            for round in 0..<50 {
                for socket in sockets {
                    try await socket.send(.readRequest(TFTPRequest(fileName: "f.bin", mode: "octet")), to: server)
                }
                if round % 10 == 9 { try await Task.sleep(for: .milliseconds(5)) }
            }
            var busy = 0
            for socket in sockets {
                for envelope in await socket.drain(for: .milliseconds(100)) {
                    if case .error(0, let message) = try TFTPPacket.parse(envelope.data), message.contains("busy") { busy += 1 }
                }
                await socket.close()
            }
            #expect(busy > 0)
            #expect(service.statistics.busy > 0)
            // The abandoned transfers time out; then a normal request is served.
            try await eventually(timeout: .seconds(20)) { service.statistics.active == 0 }
            let got = try await download("f.bin", from: port)
            #expect(byteDifference(got.data, pattern(4000)) == nil)
        }
    }

    @Test("boot.ipxe is the built-in template rendered with the boot URL; .ipxe files in the root are rendered too")
    func templates() async throws {
        let root = try await Fixture.make()
        defer { Task { await root.remove() } }
        try await root.write("custom.ipxe", Array("#!ipxe\nchain {{bootURL}}/x?a=1&b=2 # {{clientAddress}} via {{tftpServer}}\n".utf8))
        try await withTFTPServer(root: root) { _, port, _ in
            let boot = try await download("boot.ipxe", from: port, options: [TFTPOption("tsize", "0")])
            let text = String(decoding: boot.data, as: UTF8.self)
            #expect(
                text.contains(
                    "chain --autofree http://10.9.8.7:9080/api/current/profiles?macs=${net0/mac:hexhyp}&ips=${net0/ip} || goto wait"))
            #expect(text.hasPrefix("#!ipxe\n"))
            #expect(boot.optionValues["tsize"] == "\(boot.data.count)")
            let custom = try await download("/custom.ipxe", from: port)
            #expect(
                String(decoding: custom.data, as: UTF8.self) == "#!ipxe\nchain http://10.9.8.7:9080/x?a=1&b=2 # 127.0.0.1 via 10.9.8.7\n")
        }
    }

    @Test("undionly.kpxe comes from the iPXE folder when the root has none; the root's own copy wins")
    func builtInIPXE() async throws {
        let root = try await Fixture.make()
        let ipxe = try await Fixture.make()
        defer {
            Task {
                await root.remove()
                await ipxe.remove()
            }
        }
        let undionly = pattern(70_000, seed: 11)
        try await ipxe.write("undionly.kpxe", undionly)
        try await ipxe.write("ipxe.efi", Array("from ipxe dir".utf8))
        try await ipxe.write("other.bin", Array("not built in".utf8))
        try await root.write("ipxe.efi", Array("from root".utf8))
        try await withTFTPServer(root: root, ipxeDirectory: ipxe.directory) { _, port, _ in
            let served = try await download("undionly.kpxe", from: port, options: [TFTPOption("blksize", "1468")])
            #expect(byteDifference(served.data, undionly) == nil)
            let rootCopy = try await download("ipxe.efi", from: port)
            #expect(rootCopy.data == Array("from root".utf8))
            let notBuiltIn = try await download("other.bin", from: port)
            #expect(notBuiltIn.error?.code == 1)
        }
        try await withTFTPServer(root: root, ipxeDirectory: nil) { _, port, _ in
            let disabled = try await download("undionly.kpxe", from: port)
            #expect(disabled.error?.code == 1)
        }
    }
}
