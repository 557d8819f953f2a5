import Testing

@testable import DHCPService

/// Client DHCP packets (UDP payloads, hex) for PacketTests.
///
/// These are not captures: each was assembled byte by byte by a one-off script from what the named
/// client's source sends (field layout per RFC 2131 §2, options per RFC 2132), then pasted here.
/// The addresses describe one small rack: server and router 10.1.1.1, leases from 10.1.1.100.
enum Fixtures {
    /// busybox 1.35.0 `udhcpc -x hostname:rack1-node07` on a QEMU NIC, first DISCOVER
    /// (dhcpc.c `send_discover` → `init_packet` + `add_client_options`):
    /// xid 0x5b6c1e07, secs 0, flags 0 (no `-B`), chaddr 52:54:00:12:34:56;
    /// options 53=1, 61=01+MAC (udhcpc's default client id), 57=576 (IP_UDP_DHCP_SIZE),
    /// 55=[1 3 6 12 15 28 42] (the OPTION_REQ entries of `dhcp_optflags`), 60="udhcp 1.35.0",
    /// 12="rack1-node07", end. udhcpc cuts the packet after the end option but not below 300 bytes.
    static let udhcpcDiscover = bytes(
        fromHex:
            """
            01 01 06 00 5b 6c 1e 07 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 52 54 00 12
            34 56 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 63 82 53 63
            35 01 01 3d 07 01 52 54 00 12 34 56 39 02 02 40
            37 07 01 03 06 0c 0f 1c 2a 3c 0c 75 64 68 63 70
            20 31 2e 33 35 2e 30 0c 0c 72 61 63 6b 31 2d 6e
            6f 64 65 30 37 ff 00 00 00 00 00 00
            """)

    /// The same client's REQUEST in SELECTING state, answering an offer of 10.1.1.100 from 10.1.1.1
    /// (`send_select`): same xid, secs 1, ciaddr 0; options 53=3, 61, 50=10.1.1.100, 54=10.1.1.1,
    /// then 57, 55, 60, 12 as before. 306 bytes, so no padding.
    static let udhcpcRequestSelecting = bytes(
        fromHex:
            """
            01 01 06 00 5b 6c 1e 07 00 01 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 52 54 00 12
            34 56 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 63 82 53 63
            35 01 03 3d 07 01 52 54 00 12 34 56 32 04 0a 01
            01 64 36 04 0a 01 01 01 39 02 02 40 37 07 01 03
            06 0c 0f 1c 2a 3c 0c 75 64 68 63 70 20 31 2e 33
            35 2e 30 0c 0c 72 61 63 6b 31 2d 6e 6f 64 65 30
            37 ff
            """)

    /// The same client renewing its lease by unicast (`send_renew`): new xid 0x7e31a9c2,
    /// ciaddr 10.1.1.100, and no option 50 or 54, as RFC 2131 §4.3.2 requires in RENEWING.
    static let udhcpcRequestRenewing = bytes(
        fromHex:
            """
            01 01 06 00 7e 31 a9 c2 00 00 00 00 0a 01 01 64
            00 00 00 00 00 00 00 00 00 00 00 00 52 54 00 12
            34 56 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 63 82 53 63
            35 01 03 3d 07 01 52 54 00 12 34 56 39 02 02 40
            37 07 01 03 06 0c 0f 1c 2a 3c 0c 75 64 68 63 70
            20 31 2e 33 35 2e 30 0c 0c 72 61 63 6b 31 2d 6e
            6f 64 65 30 37 ff 00 00 00 00 00 00
            """)

    /// The same client's RELEASE (`send_release`, e.g. `udhcpc -R` on exit): xid 0x0d4e8f21,
    /// ciaddr 10.1.1.100 (the address released), options 53=7, 61, 54=10.1.1.1.
    static let udhcpcRelease = bytes(
        fromHex:
            """
            01 01 06 00 0d 4e 8f 21 00 00 00 00 0a 01 01 64
            00 00 00 00 00 00 00 00 00 00 00 00 52 54 00 12
            34 56 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 63 82 53 63
            35 01 07 3d 07 01 52 54 00 12 34 56 36 04 0a 01
            01 01 ff 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00
            """)

    /// ISC dhclient 4.4 with Debian's stock dhclient.conf and a remembered lease, on a Supermicro
    /// NIC 00:25:90:ab:cd:ef: xid 0x9a1f3b57, options 53=1, 50=10.1.1.101 (the old lease),
    /// 12="rack1-node08" (`send host-name = gethostname()`), 55=[1 28 2 3 15 6 119 12 44 47 26 121 42]
    /// (the `request` line minus its DHCPv6 entries), end; padded to BOOTP's 300 bytes.
    static let dhclientDiscover = bytes(
        fromHex:
            """
            01 01 06 00 9a 1f 3b 57 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 25 90 ab
            cd ef 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 63 82 53 63
            35 01 01 32 04 0a 01 01 65 0c 0c 72 61 63 6b 31
            2d 6e 6f 64 65 30 38 37 0d 01 1c 02 03 0f 06 77
            0c 2c 2f 1a 79 2a ff 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00
            """)

    /// A legacy-BIOS PXE ROM (Intel UNDI 2.1) DISCOVER, the packet a rack server sends first:
    /// xid 0x674c2d9a, secs 4, broadcast flag set, chaddr 00:1e:67:4c:2d:9a; options 53=1, 57=1260,
    /// 93=0x0000 (x86 BIOS), 94=01 02 01 (UNDI 2.1), 97=00+GUID, 55=[36 codes incl. 66, 67, 128-135],
    /// 60="PXEClient:Arch:00000:UNDI:002001", end; padded to 548 bytes (a 576-byte IP datagram).
    static let pxeDiscover = bytes(
        fromHex:
            """
            01 01 06 00 67 4c 2d 9a 00 04 80 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 1e 67 4c
            2d 9a 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 63 82 53 63
            35 01 01 39 02 04 ec 5d 02 00 00 5e 03 01 02 01
            61 11 00 4c 4c 45 44 00 4a 39 10 80 4a c4 c0 4f
            38 4d 32 37 24 01 02 03 04 05 06 0b 0c 0d 0f 10
            11 12 16 17 1c 28 29 2a 2b 32 33 36 3a 3b 3c 42
            43 80 81 82 83 84 85 86 87 3c 20 50 58 45 43 6c
            69 65 6e 74 3a 41 72 63 68 3a 30 30 30 30 30 3a
            55 4e 44 49 3a 30 30 32 30 30 31 ff 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
            00 00 00 00
            """)

    static let all: [Fixture] = [
        Fixture(name: "udhcpc DISCOVER", bytes: udhcpcDiscover),
        Fixture(name: "udhcpc REQUEST (selecting)", bytes: udhcpcRequestSelecting),
        Fixture(name: "udhcpc REQUEST (renewing)", bytes: udhcpcRequestRenewing),
        Fixture(name: "udhcpc RELEASE", bytes: udhcpcRelease),
        Fixture(name: "dhclient DISCOVER", bytes: dhclientDiscover),
        Fixture(name: "PXE ROM DISCOVER", bytes: pxeDiscover),
    ]

    static let udhcpcMAC = MACAddress(octets: (0x52, 0x54, 0x00, 0x12, 0x34, 0x56))
    static let udhcpcClientIdentifier: [UInt8] = [0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]
    static let udhcpcParameterRequestList: [DHCPOptionCode] = [1, 3, 6, 12, 15, 28, 42]
    static let serverAddress = IPv4Address(octets: (10, 1, 1, 1))
    static let leasedAddress = IPv4Address(octets: (10, 1, 1, 100))

    /// Whitespace-separated hex; a typo in a fixture is a bug in the test, so it traps.
    static func bytes(fromHex text: String) -> [UInt8] {
        text.split(whereSeparator: \.isWhitespace).map { pair in
            guard pair.count == 2, let byte = UInt8(pair, radix: 16) else { preconditionFailure("bad hex byte \(pair)") }
            return byte
        }
    }
}

/// A named fixture, so parameterized tests say which packet failed.
struct Fixture: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: [UInt8]

    var testDescription: String { name }
}
