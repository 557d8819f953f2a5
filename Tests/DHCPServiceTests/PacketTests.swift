import Foundation
import Testing

@testable import DHCPService

// MARK: - Helpers

/// SplitMix64: a tiny deterministic generator, so the random corpora are identical on every run
/// and a failure can be reproduced from its seed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(count)
        while result.count < count {
            var word = next()
            for _ in 0..<min(8, count - result.count) {
                result.append(UInt8(truncatingIfNeeded: word))
                word >>= 8
            }
        }
        return result
    }
}

/// A client request built field by field, independently of `serialize()`. `options` is copied
/// verbatim after the cookie: no end option or padding is added, so tests control every byte.
func rawPacket(
    hlen: UInt8 = 6, sname: [UInt8] = [], file: [UInt8] = [], cookie: [UInt8] = DHCPPacket.magicCookie, options: [UInt8]
) -> [UInt8] {
    func field(_ bytes: [UInt8], _ size: Int) -> [UInt8] {
        bytes + [UInt8](repeating: 0, count: size - bytes.count)
    }
    var bytes: [UInt8] = [1, 1, hlen, 0, 0xDE, 0xAD, 0xBE, 0xEF]
    bytes += [UInt8](repeating: 0, count: 20)  // secs, flags, ciaddr, yiaddr, siaddr, giaddr
    bytes += field(Fixtures.udhcpcMAC.bytes, 16)
    bytes += field(sname, 64) + field(file, 128) + cookie + options
    return bytes
}

/// Exactly `size` bytes of plausible options: random codes (pad, end and overload included) whose
/// lengths fit, then pads. A pad's "length" byte is read as the next code, which varies things further.
func randomOptions(filling size: Int, using generator: inout SeededGenerator) -> [UInt8] {
    var bytes: [UInt8] = []
    while size - bytes.count >= 2 {
        let code = UInt8.random(in: 0...255, using: &generator)
        let length = Int.random(in: 0...min(12, size - bytes.count - 2), using: &generator)
        bytes += [code, UInt8(length)] + generator.bytes(length)
    }
    return bytes + zeros(size - bytes.count)
}

func parseResult(_ bytes: [UInt8]) -> Result<DHCPPacket, DHCPPacketError> {
    Result { () throws(DHCPPacketError) in try DHCPPacket.parse(bytes) }
}

/// Parses `bytes` and tallies the outcome ("parsed" or the rejection reason). Whatever parses must
/// come back unchanged from serialize → parse. A trap anywhere in here would kill the test run,
/// which is the point: no input may crash the parser.
func exercise(_ bytes: [UInt8], tally: inout [String: Int], sourceLocation: SourceLocation = #_sourceLocation) {
    switch parseResult(bytes) {
    case .success(let packet):
        tally["parsed", default: 0] += 1
        let again = parseResult(packet.serialize())
        if again != .success(packet) {
            Issue.record("round trip changed the packet parsed from \(hexString(bytes))", sourceLocation: sourceLocation)
        }
    case .failure(let error):
        tally[error.reason.rawValue, default: 0] += 1
    }
}

func hexString(_ bytes: [UInt8]) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
}

/// Everything up to the last non-zero byte (the end option, in a well-formed packet).
func withoutTrailingZeros(_ bytes: [UInt8]) -> [UInt8] {
    Array(bytes[..<(bytes.lastIndex { $0 != 0 }.map { $0 + 1 } ?? 0)])
}

func zeros(_ count: Int) -> [UInt8] {
    [UInt8](repeating: 0, count: count)
}

// MARK: - Real client packets

@Suite("Parsing real client packets")
struct ClientPacketTests {
    @Test func udhcpcDiscover() throws {
        let packet = try DHCPPacket.parse(Fixtures.udhcpcDiscover)
        #expect(packet.op == DHCPPacket.bootRequest)
        #expect(packet.htype == 1)
        #expect(packet.hlen == 6)
        #expect(packet.hops == 0)
        #expect(packet.xid == 0x5B6C_1E07)
        #expect(packet.secs == 0)
        #expect(packet.flags == 0)
        #expect(!packet.broadcastFlag)
        #expect(packet.ciaddr == .zero)
        #expect(packet.yiaddr == .zero)
        #expect(packet.siaddr == .zero)
        #expect(packet.giaddr == .zero)
        #expect(packet.chaddr == Fixtures.udhcpcMAC.bytes + zeros(10))
        #expect(packet.clientMAC == Fixtures.udhcpcMAC)
        #expect(packet.sname == "")
        #expect(packet.file == "")
        #expect(packet.messageType == .discover)
        #expect(
            packet.optionOrder == [
                .messageType, .clientIdentifier, .maximumMessageSize, .parameterRequestList, .vendorClassIdentifier, .hostName,
            ])
        #expect(packet.options.count == 6)
        #expect(packet.clientIdentifier == Fixtures.udhcpcClientIdentifier)
        #expect(packet.maximumMessageSize == 576)
        #expect(packet.parameterRequestList == Fixtures.udhcpcParameterRequestList)
        #expect(packet.vendorClassIdentifier == "udhcp 1.35.0")
        #expect(packet.hostName == "rack1-node07")
        #expect(packet.requestedIPAddress == nil)
        #expect(packet.serverIdentifier == nil)
        #expect(packet.leaseTime == nil)
    }

    @Test func udhcpcRequestWhileSelecting() throws {
        let packet = try DHCPPacket.parse(Fixtures.udhcpcRequestSelecting)
        #expect(packet.op == DHCPPacket.bootRequest)
        #expect(packet.htype == 1 && packet.hlen == 6 && packet.hops == 0)
        #expect(packet.xid == 0x5B6C_1E07, "the same transaction as the DISCOVER")
        #expect(packet.secs == 1)
        #expect(packet.flags == 0)
        #expect(packet.ciaddr == .zero, "SELECTING: the client has no address yet")
        #expect(packet.yiaddr == .zero && packet.siaddr == .zero && packet.giaddr == .zero)
        #expect(packet.clientMAC == Fixtures.udhcpcMAC)
        #expect(packet.sname == "" && packet.file == "")
        #expect(packet.messageType == .request)
        #expect(
            packet.optionOrder == [
                .messageType, .clientIdentifier, .requestedIPAddress, .serverIdentifier, .maximumMessageSize,
                .parameterRequestList, .vendorClassIdentifier, .hostName,
            ])
        #expect(packet.requestedIPAddress == Fixtures.leasedAddress)
        #expect(packet.serverIdentifier == Fixtures.serverAddress)
        #expect(packet.clientIdentifier == Fixtures.udhcpcClientIdentifier)
        #expect(packet.maximumMessageSize == 576)
        #expect(packet.parameterRequestList == Fixtures.udhcpcParameterRequestList)
        #expect(packet.vendorClassIdentifier == "udhcp 1.35.0")
        #expect(packet.hostName == "rack1-node07")
    }

    @Test func udhcpcRequestWhileRenewing() throws {
        let packet = try DHCPPacket.parse(Fixtures.udhcpcRequestRenewing)
        #expect(packet.op == DHCPPacket.bootRequest)
        #expect(packet.htype == 1 && packet.hlen == 6 && packet.hops == 0)
        #expect(packet.xid == 0x7E31_A9C2)
        #expect(packet.secs == 0 && packet.flags == 0)
        #expect(packet.ciaddr == Fixtures.leasedAddress, "RENEWING: the client names its address in ciaddr")
        #expect(packet.yiaddr == .zero && packet.siaddr == .zero && packet.giaddr == .zero)
        #expect(packet.clientMAC == Fixtures.udhcpcMAC)
        #expect(packet.messageType == .request)
        #expect(packet.requestedIPAddress == nil)
        #expect(packet.serverIdentifier == nil)
        #expect(
            packet.optionOrder == [
                .messageType, .clientIdentifier, .maximumMessageSize, .parameterRequestList, .vendorClassIdentifier, .hostName,
            ])
        #expect(packet.hostName == "rack1-node07")
    }

    @Test func udhcpcRelease() throws {
        let packet = try DHCPPacket.parse(Fixtures.udhcpcRelease)
        #expect(packet.op == DHCPPacket.bootRequest)
        #expect(packet.htype == 1 && packet.hlen == 6 && packet.hops == 0)
        #expect(packet.xid == 0x0D4E_8F21)
        #expect(packet.secs == 0 && packet.flags == 0)
        #expect(packet.ciaddr == Fixtures.leasedAddress, "the address being released")
        #expect(packet.yiaddr == .zero && packet.siaddr == .zero && packet.giaddr == .zero)
        #expect(packet.clientMAC == Fixtures.udhcpcMAC)
        #expect(packet.sname == "" && packet.file == "")
        #expect(packet.messageType == .release)
        #expect(packet.optionOrder == [.messageType, .clientIdentifier, .serverIdentifier])
        #expect(packet.clientIdentifier == Fixtures.udhcpcClientIdentifier)
        #expect(packet.serverIdentifier == Fixtures.serverAddress)
    }

    @Test func dhclientDiscover() throws {
        let packet = try DHCPPacket.parse(Fixtures.dhclientDiscover)
        #expect(packet.op == DHCPPacket.bootRequest)
        #expect(packet.htype == 1 && packet.hlen == 6 && packet.hops == 0)
        #expect(packet.xid == 0x9A1F_3B57)
        #expect(packet.secs == 0 && packet.flags == 0)
        #expect(packet.ciaddr == .zero && packet.yiaddr == .zero && packet.siaddr == .zero && packet.giaddr == .zero)
        #expect(packet.chaddr == [0x00, 0x25, 0x90, 0xAB, 0xCD, 0xEF] + zeros(10))
        #expect(packet.clientMAC?.description == "00:25:90:ab:cd:ef")
        #expect(packet.sname == "" && packet.file == "")
        #expect(packet.messageType == .discover)
        #expect(packet.optionOrder == [.messageType, .requestedIPAddress, .hostName, .parameterRequestList])
        #expect(packet.requestedIPAddress == IPv4Address("10.1.1.101"))
        #expect(packet.hostName == "rack1-node08")
        #expect(packet.parameterRequestList == [1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42])
        #expect(packet.clientIdentifier == nil, "dhclient sends no client identifier by default")
        #expect(packet.vendorClassIdentifier == nil)
        #expect(packet.maximumMessageSize == nil)
    }

    @Test func pxeDiscover() throws {
        let packet = try DHCPPacket.parse(Fixtures.pxeDiscover)
        #expect(packet.op == DHCPPacket.bootRequest)
        #expect(packet.htype == 1 && packet.hlen == 6 && packet.hops == 0)
        #expect(packet.xid == 0x674C_2D9A)
        #expect(packet.secs == 4)
        #expect(packet.flags == 0x8000)
        #expect(packet.broadcastFlag, "PXE ROMs cannot take unicast before they have an address")
        #expect(packet.ciaddr == .zero && packet.yiaddr == .zero && packet.siaddr == .zero && packet.giaddr == .zero)
        #expect(packet.clientMAC == MACAddress("00:1e:67:4c:2d:9a"))
        #expect(packet.messageType == .discover)
        #expect(
            packet.optionOrder == [
                .messageType, .maximumMessageSize, .clientArchitecture, 94, 97, .parameterRequestList, .vendorClassIdentifier,
            ])
        #expect(packet.maximumMessageSize == 1260)
        #expect(packet.options[.clientArchitecture] == [0, 0])
        #expect(packet.options[94] == [1, 2, 1])
        #expect(packet.options[97]?.count == 17)
        #expect(packet.parameterRequestList?.count == 36)
        #expect(packet.parameterRequestList?.contains(.tftpServerName) == true)
        #expect(packet.parameterRequestList?.contains(.bootfileName) == true)
        #expect(packet.vendorClassIdentifier == "PXEClient:Arch:00000:UNDI:002001")
    }

    @Test(arguments: Fixtures.all)
    func roundTrips(_ fixture: Fixture) throws {
        let packet = try DHCPPacket.parse(fixture.bytes)
        let serialized = packet.serialize()
        #expect(try DHCPPacket.parse(serialized) == packet)
        // Options come back in the client's order, so up to the end option the bytes are the client's;
        // only the zero padding differs for clients that pad beyond 300 bytes.
        #expect(withoutTrailingZeros(serialized) == withoutTrailingZeros(fixture.bytes))
        #expect(serialized.count == max(DHCPPacket.bootpMinimumSize, withoutTrailingZeros(fixture.bytes).count))
        if fixture.bytes.count <= DHCPPacket.bootpMinimumSize || withoutTrailingZeros(fixture.bytes).count == fixture.bytes.count {
            #expect(serialized == fixture.bytes)
        }
    }
}

// MARK: - Serializing

@Suite("Serializing")
struct SerializeTests {
    @Test func offerBytesAtKnownOffsets() throws {
        let discover = try DHCPPacket.parse(Fixtures.udhcpcDiscover)
        var offer = DHCPPacket.reply(
            to: discover, type: .offer, yiaddr: Fixtures.leasedAddress, serverIdentifier: Fixtures.serverAddress)
        offer.siaddr = Fixtures.serverAddress
        offer.file = "monorail.ipxe"
        offer.setAddress(.subnetMask, to: IPv4Address(octets: (255, 255, 255, 0)))
        offer.setAddresses(.router, to: [Fixtures.serverAddress])
        offer.setAddresses(.domainNameServer, to: [IPv4Address(octets: (10, 1, 1, 2)), IPv4Address(octets: (10, 1, 1, 3))])
        offer.setString(.domainName, to: "rack.local")
        offer.setUInt32(.leaseTime, to: 86_400)
        offer.setUInt32(.renewalTime, to: 43_200)
        offer.setUInt32(.rebindingTime, to: 75_600)
        offer.setString(.tftpServerName, to: "10.1.1.1")
        offer.setString(.bootfileName, to: "monorail.ipxe")

        let bytes = offer.serialize()
        let expectedOptions: [UInt8] =
            [53, 1, 2]
            + [54, 4, 10, 1, 1, 1]
            + [1, 4, 255, 255, 255, 0]
            + [3, 4, 10, 1, 1, 1]
            + [6, 8, 10, 1, 1, 2, 10, 1, 1, 3]
            + [15, 10] + Array("rack.local".utf8)
            + [51, 4, 0x00, 0x01, 0x51, 0x80]  // 86,400
            + [58, 4, 0x00, 0x00, 0xA8, 0xC0]  // 43,200
            + [59, 4, 0x00, 0x01, 0x27, 0x50]  // 75,600
            + [66, 8] + Array("10.1.1.1".utf8)
            + [67, 13] + Array("monorail.ipxe".utf8)
            + [255]
        #expect(bytes.count == 240 + expectedOptions.count, "over 300 bytes already, so no padding")
        #expect(Array(bytes[0..<4]) == [2, 1, 6, 0], "op reply, Ethernet, hlen 6, hops 0")
        #expect(Array(bytes[4..<8]) == [0x5B, 0x6C, 0x1E, 0x07], "the DISCOVER's xid")
        #expect(Array(bytes[8..<12]) == [0, 0, 0, 0], "secs, flags")
        #expect(Array(bytes[12..<16]) == [0, 0, 0, 0], "ciaddr")
        #expect(Array(bytes[16..<20]) == [10, 1, 1, 100], "yiaddr")
        #expect(Array(bytes[20..<24]) == [10, 1, 1, 1], "siaddr")
        #expect(Array(bytes[24..<28]) == [0, 0, 0, 0], "giaddr")
        #expect(Array(bytes[28..<44]) == Fixtures.udhcpcMAC.bytes + zeros(10), "chaddr")
        #expect(Array(bytes[44..<108]) == zeros(64), "sname")
        #expect(Array(bytes[108..<236]) == Array("monorail.ipxe".utf8) + zeros(115), "file")
        #expect(Array(bytes[236..<240]) == [99, 130, 83, 99], "magic cookie")
        #expect(Array(bytes[240...]) == expectedOptions)

        let parsed = try DHCPPacket.parse(bytes)
        #expect(parsed == offer)
        #expect(parsed.messageType == .offer)
        #expect(parsed.serverIdentifier == Fixtures.serverAddress)
        #expect(parsed.address(for: .subnetMask) == IPv4Address("255.255.255.0"))
        #expect(parsed.addresses(for: .domainNameServer) == ["10.1.1.2", "10.1.1.3"].compactMap(IPv4Address.init))
        #expect(parsed.leaseTime == 86_400)
        #expect(parsed.uint32(for: .renewalTime) == 43_200)
        #expect(parsed.string(for: .bootfileName) == "monorail.ipxe")
        #expect(parsed.file == "monorail.ipxe")
    }

    @Test func smallPacketsArePaddedToTheBOOTPMinimum() {
        var packet = DHCPPacket(xid: 7)
        packet.setMessageType(.inform)
        let bytes = packet.serialize()
        #expect(bytes.count == 300)
        #expect(Array(bytes[240..<244]) == [53, 1, 8, 255])
        #expect(Array(bytes[244...]) == zeros(56))
    }

    @Test(arguments: [0, 1, 254, 255, 256, 510, 600, 1_000])
    func longOptionsAreSplitIntoInstancesOf255(length: Int) throws {
        var generator = SeededGenerator(seed: UInt64(length))
        let data = generator.bytes(length)
        var packet = DHCPPacket()
        packet.setMessageType(.inform)
        packet.set(43, bytes: data)
        let bytes = packet.serialize()

        var expected: [UInt8] = [53, 1, 8]
        var start = 0
        repeat {
            let chunk = data[start..<min(start + 255, data.count)]
            expected += [43, UInt8(chunk.count)] + chunk
            start += 255
        } while start < data.count
        expected.append(255)
        #expect(withoutTrailingZeros(Array(bytes[240...])) == expected)
        #expect(try DHCPPacket.parse(bytes) == packet, "the receiver concatenates the pieces (RFC 3396)")
    }

    @Test func settingAnOptionAgainKeepsItsPlace() {
        var packet = DHCPPacket()
        packet.setString(.hostName, to: "a")
        packet.setMessageType(.discover)
        packet.setString(.hostName, to: "b")
        #expect(packet.optionOrder == [.hostName, .messageType])
        #expect(packet.hostName == "b")
        packet.removeOption(.hostName)
        #expect(packet.optionOrder == [.messageType])
        #expect(packet.options[.hostName] == nil)
        packet.removeOption(.hostName)
        #expect(packet.optionOrder == [.messageType])
    }

    @Test func framingCodesCannotBeSetAsOptions() {
        var packet = DHCPPacket()
        packet.set(.pad, bytes: [1])
        packet.set(.end, bytes: [1])
        packet.set(.optionOverload, bytes: [3])
        #expect(packet.options.isEmpty)
        #expect(packet.optionOrder.isEmpty)
    }

    @Test func typedSettersWriteNetworkOrder() {
        var packet = DHCPPacket()
        packet.setUInt32(.leaseTime, to: 0x0102_0304)
        packet.setUInt16(.maximumMessageSize, to: 0x0506)
        packet.setAddress(.serverIdentifier, to: IPv4Address(rawValue: 0x0A00_0001))
        packet.setAddresses(.router, to: [])
        packet.setString(.hostName, to: "nœud")
        #expect(packet.options[.leaseTime] == [1, 2, 3, 4])
        #expect(packet.options[.maximumMessageSize] == [5, 6])
        #expect(packet.options[.serverIdentifier] == [10, 0, 0, 1])
        #expect(packet.options[.router] == [])
        #expect(packet.options[.hostName] == Array("nœud".utf8))
        #expect(packet.hostName == "nœud")
        #expect(packet.addresses(for: .router) == [])
    }

    @Test func typedGettersRejectWrongLengths() {
        var packet = DHCPPacket()
        packet.set(.requestedIPAddress, bytes: [10, 0, 0])
        packet.set(.leaseTime, bytes: [0, 1])
        packet.set(.maximumMessageSize, bytes: [2])
        packet.set(.domainNameServer, bytes: [10, 0, 0, 1, 10])
        packet.set(.messageType, bytes: [1, 1])
        #expect(packet.requestedIPAddress == nil)
        #expect(packet.leaseTime == nil)
        #expect(packet.maximumMessageSize == nil)
        #expect(packet.addresses(for: .domainNameServer) == nil)
        #expect(packet.messageType == nil)
        #expect(packet.string(for: .bootfileName) == nil)
    }

    @Test func textOptionsLoseTrailingNULs() {
        var packet = DHCPPacket()
        packet.set(.hostName, bytes: Array("node\0\0".utf8))
        packet.set(.vendorClassIdentifier, bytes: [0, 0])
        #expect(packet.hostName == "node")
        #expect(packet.vendorClassIdentifier == "")
    }

    @Test func headerFieldsAlwaysFitTheirSlots() {
        var packet = DHCPPacket(chaddr: [1, 2, 3], sname: String(repeating: "s", count: 100))
        #expect(packet.chaddr == [1, 2, 3] + zeros(13))
        #expect(packet.sname.utf8.count == 63)
        packet.chaddr = Array(1...20)
        #expect(packet.chaddr == Array(1...16))
        packet.file = String(repeating: "f", count: 200)
        #expect(packet.file.utf8.count == 127)
        packet.file = "pxelinux.0\0junk"
        #expect(packet.file == "pxelinux.0")
        packet.sname = String(repeating: "é", count: 40)  // 2 bytes each: 31 fit in 63
        #expect(packet.sname == String(repeating: "é", count: 31))
    }

    @Test func broadcastFlagIsTheTopBitOfFlags() {
        var packet = DHCPPacket(flags: 0x0001)
        #expect(!packet.broadcastFlag)
        packet.broadcastFlag = true
        #expect(packet.flags == 0x8001)
        packet.broadcastFlag = false
        #expect(packet.flags == 0x0001)
    }

    @Test func clientMACNeedsEthernetHardware() {
        var packet = DHCPPacket(htype: 6, hlen: 6, chaddr: Fixtures.udhcpcMAC.bytes)
        #expect(packet.clientMAC == nil, "htype 6 is IEEE 802, not Ethernet")
        packet.htype = 1
        packet.hlen = 16
        #expect(packet.clientMAC == nil)
        packet = DHCPPacket(htype: 32, hlen: 0)
        packet.setClientMAC(Fixtures.udhcpcMAC)
        #expect(packet.htype == 1 && packet.hlen == 6)
        #expect(packet.clientMAC == Fixtures.udhcpcMAC)
    }
}

// MARK: - Replies

@Suite("Building replies")
struct ReplyTests {
    @Test func offerCopiesTheTransactionFields() throws {
        var discover = try DHCPPacket.parse(Fixtures.pxeDiscover)
        discover.giaddr = IPv4Address(octets: (10, 1, 2, 1))
        discover.hops = 1
        let offer = DHCPPacket.reply(
            to: discover, type: .offer, yiaddr: Fixtures.leasedAddress, serverIdentifier: Fixtures.serverAddress)
        #expect(offer.op == DHCPPacket.bootReply)
        #expect(offer.htype == discover.htype && offer.hlen == discover.hlen)
        #expect(offer.hops == 0)
        #expect(offer.xid == discover.xid)
        #expect(offer.secs == 0)
        #expect(offer.flags == 0x8000 && offer.broadcastFlag)
        #expect(offer.ciaddr == .zero)
        #expect(offer.yiaddr == Fixtures.leasedAddress)
        #expect(offer.siaddr == .zero)
        #expect(offer.giaddr == IPv4Address("10.1.2.1"), "a relayed request is answered through its relay")
        #expect(offer.chaddr == discover.chaddr)
        #expect(offer.sname == "" && offer.file == "")
        #expect(offer.optionOrder == [.messageType, .serverIdentifier])
        #expect(offer.messageType == .offer)
        #expect(offer.serverIdentifier == Fixtures.serverAddress)
    }

    @Test func ackEchoesTheRenewingClientsAddress() throws {
        let renew = try DHCPPacket.parse(Fixtures.udhcpcRequestRenewing)
        let ack = DHCPPacket.reply(to: renew, type: .ack, yiaddr: Fixtures.leasedAddress, serverIdentifier: Fixtures.serverAddress)
        #expect(ack.ciaddr == Fixtures.leasedAddress)
        #expect(ack.messageType == .ack)
        let nak = DHCPPacket.reply(to: renew, type: .nak, yiaddr: .zero, serverIdentifier: Fixtures.serverAddress)
        #expect(nak.ciaddr == .zero)
        #expect(nak.yiaddr == .zero)
        #expect(nak.messageType == .nak)
    }
}

// MARK: - Option encodings

@Suite("Option encodings on the wire")
struct OptionEncodingTests {
    @Test func repeatedOptionsAreConcatenated() throws {
        let packet = try DHCPPacket.parse(
            rawPacket(options: [55, 2, 1, 3, 53, 1, 1, 55, 1, 6, 12, 0, 12, 2, 0x61, 0x62, 255]))
        #expect(packet.parameterRequestList == [1, 3, 6])
        #expect(packet.hostName == "ab")
        #expect(packet.optionOrder == [.parameterRequestList, .messageType, .hostName])
    }

    @Test func padsAreSkippedAndZeroLengthOptionsKept() throws {
        let packet = try DHCPPacket.parse(rawPacket(options: [0, 0, 53, 1, 1, 0, 80, 0, 0, 255]))
        #expect(packet.optionOrder == [.messageType, 80])
        #expect(packet.options[80] == [], "rapid commit (RFC 4039) has no data")
        #expect(try DHCPPacket.parse(packet.serialize()) == packet)
    }

    @Test func aMissingEndOptionIsTolerated() throws {
        let packet = try DHCPPacket.parse(rawPacket(options: [53, 1, 3, 50, 4, 10, 1, 1, 100]))
        #expect(packet.requestedIPAddress == Fixtures.leasedAddress)
    }

    @Test func bytesAfterTheEndOptionAreIgnored() throws {
        let packet = try DHCPPacket.parse(rawPacket(options: [53, 1, 1, 255, 12, 200, 0xFF, 0x35]))
        #expect(packet.optionOrder == [.messageType])
    }

    @Test func overloadReadsFileThenSname() throws {
        let bytes = rawPacket(
            sname: [12, 2, 0x65, 0x66, 60, 1, 0x78, 255],
            file: [12, 2, 0x63, 0x64, 0, 0, 61, 3, 1, 2, 3, 255],
            options: [53, 1, 1, 52, 1, 3, 12, 2, 0x61, 0x62, 255])
        let packet = try DHCPPacket.parse(bytes)
        #expect(packet.hostName == "abcdef", "options field, then file, then sname (RFC 3396 §7)")
        #expect(packet.optionOrder == [.messageType, .hostName, .clientIdentifier, .vendorClassIdentifier])
        #expect(packet.clientIdentifier == [1, 2, 3])
        #expect(packet.vendorClassIdentifier == "x")
        #expect(packet.options[.optionOverload] == nil, "overloading is undone, not reported")
        #expect(packet.sname == "" && packet.file == "", "fields holding options hold no names")
        let reparsed = try DHCPPacket.parse(packet.serialize())
        #expect(reparsed == packet)
    }

    @Test func overloadOfFileAloneLeavesSnameAName() throws {
        let bytes = rawPacket(
            sname: Array("tftp.rack.local".utf8), file: [67, 11] + Array("ipxe.efi\0\0\0".utf8) + [255],
            options: [53, 1, 1, 52, 1, 1, 255])
        let packet = try DHCPPacket.parse(bytes)
        #expect(packet.sname == "tftp.rack.local")
        #expect(packet.file == "")
        #expect(packet.string(for: .bootfileName) == "ipxe.efi")
    }

    @Test func overloadOfSnameAloneLeavesFileAName() throws {
        let bytes = rawPacket(sname: [66, 8] + Array("10.1.1.1".utf8), file: Array("undionly.kpxe".utf8), options: [53, 1, 1, 52, 1, 2])
        let packet = try DHCPPacket.parse(bytes)
        #expect(packet.file == "undionly.kpxe")
        #expect(packet.sname == "")
        #expect(packet.string(for: .tftpServerName) == "10.1.1.1")
    }

    @Test func overloadInsideAnOverloadedFieldIsIgnored() throws {
        // Only the options field may say where else to look, so sname stays a name here.
        let bytes = rawPacket(sname: Array("srv".utf8), file: [52, 1, 2, 255], options: [53, 1, 1, 52, 1, 1, 255])
        let packet = try DHCPPacket.parse(bytes)
        #expect(packet.sname == "srv")
        #expect(packet.optionOrder == [.messageType])
    }

    @Test func invalidUTF8InHeaderNamesStillRoundTrips() throws {
        let packet = try DHCPPacket.parse(rawPacket(sname: [UInt8](repeating: 0xFF, count: 64), options: [53, 1, 1]))
        // Each bad byte becomes U+FFFD (3 bytes), cut on a scalar boundary to fit 63 bytes.
        #expect(packet.sname == String(repeating: "\u{FFFD}", count: 21))
        #expect(try DHCPPacket.parse(packet.serialize()) == packet)
    }

    @Test func largestUDPPayloadParses() throws {
        var options: [UInt8] = [53, 1, 1]
        while 240 + options.count + 257 + 1 <= DHCPPacket.maximumSize {
            options += [43, 255] + [UInt8](repeating: 0xAB, count: 255)
        }
        options.append(255)
        var bytes = rawPacket(options: options)
        bytes += zeros(DHCPPacket.maximumSize - bytes.count)
        let packet = try DHCPPacket.parse(bytes)
        #expect(packet.options[43]?.count == (options.count - 4) / 257 * 255)
        #expect(try DHCPPacket.parse(packet.serialize()) == packet)
    }
}

// MARK: - Malformed input

/// One malformed datagram and the reason it must be rejected for.
struct MalformedCase: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: [UInt8]
    let reason: DHCPPacketError.Reason

    var testDescription: String { name }

    static let all: [MalformedCase] = {
        var random = SeededGenerator(seed: 65_535)
        let valid = rawPacket(options: [53, 1, 1, 255])
        return [
            MalformedCase(name: "empty", bytes: [], reason: .tooShort),
            MalformedCase(name: "1 byte", bytes: [1], reason: .tooShort),
            MalformedCase(name: "235 bytes", bytes: Array(valid.prefix(235)), reason: .tooShort),
            MalformedCase(name: "239 bytes, cookie cut short", bytes: Array(valid.prefix(239)), reason: .tooShort),
            MalformedCase(
                name: "240 bytes, wrong cookie", bytes: rawPacket(cookie: [99, 130, 83, 98], options: []), reason: .badMagicCookie),
            MalformedCase(
                name: "plain BOOTP vendor area", bytes: rawPacket(cookie: [0, 0, 0, 0], options: zeros(60)), reason: .badMagicCookie),
            MalformedCase(name: "240 bytes, no options", bytes: rawPacket(options: []), reason: .missingMessageType),
            MalformedCase(name: "code without length", bytes: rawPacket(options: [53, 1, 1, 12]), reason: .truncatedOption),
            MalformedCase(
                name: "length past the end", bytes: rawPacket(options: [53, 1, 1, 12, 10, 0x61, 0x62]), reason: .truncatedOption),
            MalformedCase(name: "message type past the end", bytes: rawPacket(options: [53, 5, 1]), reason: .truncatedOption),
            MalformedCase(name: "hlen 17", bytes: rawPacket(hlen: 17, options: [53, 1, 1, 255]), reason: .badLength),
            MalformedCase(name: "hlen 255", bytes: rawPacket(hlen: 255, options: [53, 1, 1, 255]), reason: .badLength),
            MalformedCase(name: "no option 53", bytes: rawPacket(options: [12, 1, 0x61, 255]), reason: .missingMessageType),
            MalformedCase(
                name: "option 53 only in unused file", bytes: rawPacket(file: [53, 1, 1, 255], options: [255]), reason: .missingMessageType),
            MalformedCase(name: "message type 0", bytes: rawPacket(options: [53, 1, 0, 255]), reason: .invalidMessageType),
            MalformedCase(name: "message type 9", bytes: rawPacket(options: [53, 1, 9, 255]), reason: .invalidMessageType),
            MalformedCase(name: "message type 255", bytes: rawPacket(options: [53, 1, 255, 255]), reason: .invalidMessageType),
            MalformedCase(name: "message type of length 0", bytes: rawPacket(options: [53, 0, 255]), reason: .invalidMessageType),
            MalformedCase(name: "message type of length 2", bytes: rawPacket(options: [53, 2, 1, 1, 255]), reason: .invalidMessageType),
            MalformedCase(name: "message type twice", bytes: rawPacket(options: [53, 1, 1, 53, 1, 3, 255]), reason: .invalidMessageType),
            MalformedCase(name: "overload 0", bytes: rawPacket(options: [53, 1, 1, 52, 1, 0, 255]), reason: .badOptionOverload),
            MalformedCase(name: "overload 4", bytes: rawPacket(options: [53, 1, 1, 52, 1, 4, 255]), reason: .badOptionOverload),
            MalformedCase(
                name: "overload of length 2", bytes: rawPacket(options: [53, 1, 1, 52, 2, 1, 1, 255]), reason: .badOptionOverload),
            MalformedCase(
                name: "truncated option in overloaded file",
                bytes: rawPacket(file: zeros(126) + [12, 5], options: [53, 1, 1, 52, 1, 1, 255]),
                reason: .truncatedOption),
            MalformedCase(name: "65,535 random bytes", bytes: random.bytes(65_535), reason: .oversized),
            MalformedCase(name: "65,508 bytes", bytes: valid + zeros(65_508 - valid.count), reason: .oversized),
        ]
    }()
}

@Suite("Malformed input")
struct MalformedInputTests {
    @Test(arguments: MalformedCase.all)
    func isRejectedForTheRightReason(_ malformed: MalformedCase) {
        #expect(throws: DHCPPacketError(malformed.reason)) { try DHCPPacket.parse(malformed.bytes) }
    }

    @Test func hlenUpTo16IsAccepted() throws {
        #expect(try DHCPPacket.parse(rawPacket(hlen: 16, options: [53, 1, 1])).clientMAC == nil)
        #expect(try DHCPPacket.parse(rawPacket(hlen: 0, options: [53, 1, 1])).clientMAC == nil)
    }

    @Test func errorsDescribeThemselves() {
        #expect(DHCPPacketError(.badMagicCookie).description == "invalid DHCP packet: badMagicCookie")
    }

    @Test func tenThousandRandomBuffers() {
        var generator = SeededGenerator(seed: 0x2131_2132)
        var tally: [String: Int] = [:]
        for _ in 0..<10_000 {
            exercise(generator.bytes(Int.random(in: 0...1_500, using: &generator)), tally: &tally)
        }
        // Random bytes almost never carry the magic cookie.
        #expect(tally["tooShort", default: 0] > 0)
        #expect(tally["badMagicCookie", default: 0] > 0)
    }

    @Test func tenThousandRandomOptionAreas() {
        var generator = SeededGenerator(seed: 0x0D4C_9000)
        var tally: [String: Int] = [:]
        for round in 0..<10_000 {
            var header = generator.bytes(236)
            header[2] %= 17  // keep hlen legal so parsing reaches the options
            let messageType: [UInt8] = [53, 1, UInt8.random(in: 1...8, using: &generator)]
            let options: [UInt8]
            switch round % 4 {
            case 0:
                options = generator.bytes(Int.random(in: 0...400, using: &generator))
            case 1:
                options = messageType + randomOptions(filling: Int.random(in: 0...400, using: &generator), using: &generator)
            case 2:
                let overload = UInt8.random(in: 0...4, using: &generator)
                options = messageType + [52, 1, overload] + generator.bytes(Int.random(in: 0...100, using: &generator))
            default:
                // Overloaded: sname and file are read as options too.
                let overload = UInt8.random(in: 1...3, using: &generator)
                options =
                    messageType + [52, 1, overload] + randomOptions(filling: Int.random(in: 0...200, using: &generator), using: &generator)
                header.replaceSubrange(44..<108, with: randomOptions(filling: 64, using: &generator))
                header.replaceSubrange(108..<236, with: randomOptions(filling: 128, using: &generator))
            }
            exercise(header + DHCPPacket.magicCookie + options, tally: &tally)
        }
        for outcome in ["parsed", "truncatedOption", "missingMessageType", "invalidMessageType", "badOptionOverload"] {
            #expect(tally[outcome, default: 0] > 10, "the corpus should often reach \(outcome): \(tally)")
        }
    }

    @Test(arguments: Fixtures.all)
    func everyTruncationOfARealPacket(_ fixture: Fixture) {
        var tally: [String: Int] = [:]
        for length in 0...fixture.bytes.count {
            exercise(Array(fixture.bytes.prefix(length)), tally: &tally)
        }
        #expect(tally["tooShort"] == 240)
        #expect(tally["parsed", default: 0] > 0)
    }

    @Test(arguments: Fixtures.all)
    func mutationsOfARealPacket(_ fixture: Fixture) {
        var tally: [String: Int] = [:]
        for offset in fixture.bytes.indices {
            for mask: UInt8 in [0x01, 0x80, 0xFF] {
                var mutated = fixture.bytes
                mutated[offset] ^= mask
                exercise(mutated, tally: &tally)
            }
        }
        var generator = SeededGenerator(seed: UInt64(fixture.bytes.count))
        for _ in 0..<2_000 {
            var mutated = fixture.bytes
            for _ in 0..<Int.random(in: 1...6, using: &generator) {
                mutated[Int.random(in: mutated.indices, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            if Bool.random(using: &generator) {
                mutated.removeLast(Int.random(in: 0...(mutated.count - 240), using: &generator))
            }
            exercise(mutated, tally: &tally)
        }
        #expect(tally["parsed", default: 0] > 0)
        #expect(tally.count > 2, "mutations should be rejected for several reasons: \(tally)")
    }
}

// MARK: - Addresses

@Suite("IPv4 addresses")
struct IPv4AddressTests {
    @Test(
        arguments: [
            ("0.0.0.0", 0x0000_0000),
            ("10.0.0.1", 0x0A00_0001),
            ("10.1.1.100", 0x0A01_0164),
            ("192.168.0.10", 0xC0A8_000A),
            ("255.255.255.255", 0xFFFF_FFFF),
            ("1.20.100.250", 0x0114_64FA),
        ] as [(String, UInt32)])
    func parsesDottedQuads(text: String, rawValue: UInt32) throws {
        let address = try #require(IPv4Address(text))
        #expect(address.rawValue == rawValue)
        #expect(address.description == text)
    }

    /// Leading zeros are rejected ("01.2.3.4"): `inet_aton` reads "010" as octal 8, so the same
    /// text would name different hosts in different tools.
    @Test(arguments: [
        "", "10.0.0.256", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.04", "00.0.0.0", "+1.2.3.4", "1.2.3.-4",
        " 1.2.3.4", "1.2.3.4 ", "1.2.3.4\n", "1..3.4", ".1.2.3", "1.2.3.", "a.b.c.d", "0x0A.0.0.1", "1000.0.0.1",
        "1.2.3.4/24", "4294967295", "99999999999999999999.1.1.1", "١.٢.٣.٤", "１.2.3.4", "1.2.3.4.",
    ])
    func rejects(text: String) {
        #expect(IPv4Address(text) == nil)
    }

    @Test func octets() {
        let address = IPv4Address(octets: (192, 168, 1, 20))
        #expect(address.rawValue == 0xC0A8_0114)
        #expect(address.octets == [192, 168, 1, 20])
        #expect(IPv4Address.zero.description == "0.0.0.0")
        #expect(IPv4Address.broadcast.description == "255.255.255.255")
    }

    @Test func ordersNumerically() {
        let addresses = ["10.0.0.10", "10.0.0.9", "9.255.255.255", "10.0.1.0"].compactMap(IPv4Address.init)
        #expect(addresses.sorted().map(\.description) == ["9.255.255.255", "10.0.0.9", "10.0.0.10", "10.0.1.0"])
    }

    @Test func codesAsAString() throws {
        let encoded = try JSONEncoder().encode([IPv4Address(octets: (10, 0, 0, 1))])
        #expect(String(decoding: encoded, as: UTF8.self) == #"["10.0.0.1"]"#)
        #expect(try JSONDecoder().decode([IPv4Address].self, from: encoded) == [IPv4Address(octets: (10, 0, 0, 1))])
        let error = #expect(throws: DecodingError.self) {
            try JSONDecoder().decode([IPv4Address].self, from: Data(#"["10.0.0.256"]"#.utf8))
        }
        guard case .dataCorrupted? = error else {
            Issue.record("expected dataCorrupted, got \(String(describing: error))")
            return
        }
    }

    @Test(arguments: [
        ("10.1.1.77", "10.1.1.0", "255.255.255.0", true),
        ("10.1.2.1", "10.1.1.0", "255.255.255.0", false),
        ("10.1.1.77", "10.1.1.5", "255.255.255.0", true),  // host bits of the network are ignored
        ("172.16.15.255", "172.16.0.0", "255.255.240.0", true),
        ("172.16.16.0", "172.16.0.0", "255.255.240.0", false),
        ("8.8.8.8", "0.0.0.0", "0.0.0.0", true),
        ("10.0.0.1", "10.0.0.1", "255.255.255.255", true),
        ("10.0.0.2", "10.0.0.1", "255.255.255.255", false),
    ])
    func subnetMembership(address: String, network: String, mask: String, expected: Bool) throws {
        let address = try #require(IPv4Address(address))
        let network = try #require(IPv4Address(network))
        let mask = try #require(IPv4Address(mask))
        #expect(address.isInSubnet(network, mask: mask) == expected)
    }

    @Test func advancedBy() {
        let address = IPv4Address(octets: (10, 0, 0, 255))
        #expect(address.advanced(by: 1) == IPv4Address("10.0.1.0"))
        #expect(address.advanced(by: -255) == IPv4Address("10.0.0.0"))
        #expect(address.advanced(by: 0) == address)
        #expect(IPv4Address.broadcast.advanced(by: 1) == nil)
        #expect(IPv4Address.zero.advanced(by: -1) == nil)
        #expect(IPv4Address.zero.advanced(by: Int(UInt32.max)) == .broadcast)
        #expect(IPv4Address.broadcast.advanced(by: -Int(UInt32.max)) == .zero)
        #expect(IPv4Address.zero.advanced(by: Int(UInt32.max) + 1) == nil)
        #expect(address.advanced(by: .max) == nil)
        #expect(address.advanced(by: .min) == nil)
    }
}

@Suite("MAC addresses")
struct MACAddressTests {
    @Test(arguments: [
        ("00:11:22:aa:bb:cc", "00:11:22:aa:bb:cc", "001122aabbcc"),
        ("AA:BB:CC:DD:EE:FF", "aa:bb:cc:dd:ee:ff", "aabbccddeeff"),
        ("aA:0f:F0:12:34:56", "aa:0f:f0:12:34:56", "aa0ff0123456"),
        ("00:00:00:00:00:00", "00:00:00:00:00:00", "000000000000"),
    ])
    func parsesColonSeparatedHex(text: String, description: String, compactHex: String) throws {
        let mac = try #require(MACAddress(text))
        #expect(mac.description == description)
        #expect(mac.compactHex == compactHex)
        #expect(MACAddress(description) == mac)
    }

    /// Only RackHD's pattern `^([0-9a-fA-F][0-9a-fA-F]:){5}([0-9a-fA-F][0-9a-fA-F])$` is accepted.
    @Test(arguments: [
        "", "aa-bb-cc-dd-ee-ff", "aabb.ccdd.eeff", "aabbccddeeff", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00",
        "a:bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee:f", "aaa:bb:cc:dd:ee:f", "gg:bb:cc:dd:ee:ff", " aa:bb:cc:dd:ee:ff",
        "aa:bb:cc:dd:ee:ff ", "aa:bb:cc:dd:ee:ff\n", "aa:bb:cc:dd:ee:ff:", "aa::b:cc:dd:ee:ff", "aa;bb:cc:dd:ee:ff",
        "ａa:bb:cc:dd:ee:ff", "aa:bb-cc:dd:ee:ff", "0x:bb:cc:dd:ee:ff",
    ])
    func rejects(text: String) {
        #expect(MACAddress(text) == nil)
    }

    @Test func bytes() throws {
        let mac = try #require(MACAddress(bytes: [0x00, 0x1E, 0x67, 0x4C, 0x2D, 0x9A]))
        #expect(mac.bytes == [0x00, 0x1E, 0x67, 0x4C, 0x2D, 0x9A])
        #expect(mac == MACAddress(octets: (0x00, 0x1E, 0x67, 0x4C, 0x2D, 0x9A)))
        #expect(mac.description == "00:1e:67:4c:2d:9a")
        #expect(MACAddress(bytes: [1, 2, 3, 4, 5]) == nil)
        #expect(MACAddress(bytes: [1, 2, 3, 4, 5, 6, 7]) == nil)
        #expect(MACAddress("AA:BB:CC:DD:EE:FF") == MACAddress("aa:bb:cc:dd:ee:ff"))
    }

    @Test func codesAsAString() throws {
        let mac = try #require(MACAddress("52:54:00:12:34:56"))
        let encoded = try JSONEncoder().encode(["mac": mac])
        #expect(String(decoding: encoded, as: UTF8.self) == #"{"mac":"52:54:00:12:34:56"}"#)
        #expect(try JSONDecoder().decode([String: MACAddress].self, from: encoded) == ["mac": mac])
        let error = #expect(throws: DecodingError.self) {
            try JSONDecoder().decode([MACAddress].self, from: Data(#"["52-54-00-12-34-56"]"#.utf8))
        }
        guard case .dataCorrupted? = error else {
            Issue.record("expected dataCorrupted, got \(String(describing: error))")
            return
        }
    }
}

// MARK: - Codes

@Suite("Codes")
struct CodeTests {
    @Test func optionCodesHaveTheirRFCNumbers() {
        let codes: [(DHCPOptionCode, UInt8)] = [
            (.pad, 0), (.subnetMask, 1), (.router, 3), (.domainNameServer, 6), (.hostName, 12), (.domainName, 15),
            (.broadcastAddress, 28), (.requestedIPAddress, 50), (.leaseTime, 51), (.optionOverload, 52), (.messageType, 53),
            (.serverIdentifier, 54), (.parameterRequestList, 55), (.message, 56), (.maximumMessageSize, 57), (.renewalTime, 58),
            (.rebindingTime, 59), (.vendorClassIdentifier, 60), (.clientIdentifier, 61), (.tftpServerName, 66),
            (.bootfileName, 67), (.userClass, 77), (.clientArchitecture, 93), (.end, 255),
        ]
        for (code, number) in codes {
            #expect(code.rawValue == number)
        }
    }

    @Test func messageTypesHaveTheirRFCNumbers() {
        #expect(DHCPMessageType.allCases.map(\.rawValue) == Array(1...8))
        #expect(DHCPMessageType.allCases == [.discover, .offer, .request, .decline, .ack, .nak, .release, .inform])
    }
}
