/// Why `DHCPPacket.parse` rejected a datagram.
public struct DHCPPacketError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Reason: String, Sendable, Equatable, CaseIterable {
        /// Fewer bytes than the 236-byte header plus the 4-byte magic cookie (empty input included).
        case tooShort
        /// More than 65,507 bytes, the largest UDP payload IPv4 can carry.
        case oversized
        /// Bytes 236..<240 are not 99.130.83.99: plain BOOTP, or not DHCP at all.
        case badMagicCookie
        /// `hlen` is larger than the 16-byte `chaddr` field.
        case badLength
        /// An option's length byte, or its data, runs past the end of the field holding it.
        case truncatedOption
        /// Option 52 is not a single byte of 1, 2 or 3.
        case badOptionOverload
        /// Option 53 is absent, so the packet means nothing to a DHCP server.
        case missingMessageType
        /// Option 53 is not a single byte in 1...8.
        case invalidMessageType
    }

    public let reason: Reason

    public init(_ reason: Reason) {
        self.reason = reason
    }

    public var description: String {
        "invalid DHCP packet: \(reason.rawValue)"
    }
}

/// A DHCPv4 message (RFC 2131 §2, options per RFC 2132), parsed from and serialized to the UDP payload.
///
/// Options live in `options`, keyed by code, with `optionOrder` recording first appearance so that
/// serializing is deterministic. Repeated instances of a code are concatenated (RFC 3396), and the
/// overload mechanism (option 52) is undone on parse: the options found in `file`/`sname` join the
/// rest and those fields read as empty. `serialize()` never overloads.
public struct DHCPPacket: Sendable, Equatable {
    public static let bootRequest: UInt8 = 1
    public static let bootReply: UInt8 = 2
    /// `htype` for Ethernet (RFC 1700), whose `hlen` is 6.
    public static let ethernetHardwareType: UInt8 = 1
    public static let magicCookie: [UInt8] = [99, 130, 83, 99]
    /// The fixed header plus the magic cookie.
    public static let minimumSize = 240
    /// The largest UDP payload over IPv4.
    public static let maximumSize = 65_507
    /// RFC 1542 §2.1: relays and some clients drop BOOTP messages shorter than this.
    public static let bootpMinimumSize = 300

    public static let chaddrSize = 16
    /// `sname` is a 64-byte field; one byte is kept for the terminating NUL.
    public static let snameCapacity = 63
    /// `file` is a 128-byte field; one byte is kept for the terminating NUL.
    public static let fileCapacity = 127

    private static let broadcastFlagBit: UInt16 = 0x8000

    // Offsets into the fixed header (RFC 2131 figure 1).
    private enum Offset {
        static let chaddr = 28
        static let sname = 44
        static let file = 108
        static let cookie = 236
        static let options = 240
    }

    /// `bootRequest` from clients, `bootReply` from servers. Not validated on parse: a server
    /// decides for itself what to do with a reply or an unknown op.
    public var op: UInt8
    public var htype: UInt8
    public var hlen: UInt8
    public var hops: UInt8
    public var xid: UInt32
    public var secs: UInt16
    public var flags: UInt16
    public var ciaddr: IPv4Address
    public var yiaddr: IPv4Address
    public var siaddr: IPv4Address
    public var giaddr: IPv4Address
    /// Always exactly 16 bytes: shorter values are zero-padded and longer ones cut.
    public var chaddr: [UInt8] {
        didSet { chaddr = Self.fitted(chaddr, count: Self.chaddrSize) }
    }
    /// Always fits its field: cut at the first NUL and to `snameCapacity` UTF-8 bytes.
    public var sname: String {
        didSet { sname = Self.fieldText(sname, capacity: Self.snameCapacity) }
    }
    /// Always fits its field: cut at the first NUL and to `fileCapacity` UTF-8 bytes.
    public var file: String {
        didSet { file = Self.fieldText(file, capacity: Self.fileCapacity) }
    }
    /// Option data by code. Never holds pad, end or option overload: those are wire framing.
    public private(set) var options: [DHCPOptionCode: [UInt8]]
    /// The codes in `options`, in the order they are serialized.
    public private(set) var optionOrder: [DHCPOptionCode]

    public init(
        op: UInt8 = DHCPPacket.bootRequest, htype: UInt8 = DHCPPacket.ethernetHardwareType, hlen: UInt8 = 6, hops: UInt8 = 0,
        xid: UInt32 = 0, secs: UInt16 = 0, flags: UInt16 = 0, ciaddr: IPv4Address = .zero, yiaddr: IPv4Address = .zero,
        siaddr: IPv4Address = .zero, giaddr: IPv4Address = .zero, chaddr: [UInt8] = [], sname: String = "", file: String = ""
    ) {
        self.op = op
        self.htype = htype
        self.hlen = hlen
        self.hops = hops
        self.xid = xid
        self.secs = secs
        self.flags = flags
        self.ciaddr = ciaddr
        self.yiaddr = yiaddr
        self.siaddr = siaddr
        self.giaddr = giaddr
        // Property observers do not run in an initializer, so normalize here too.
        self.chaddr = Self.fitted(chaddr, count: Self.chaddrSize)
        self.sname = Self.fieldText(sname, capacity: Self.snameCapacity)
        self.file = Self.fieldText(file, capacity: Self.fileCapacity)
        options = [:]
        optionOrder = []
    }

    // MARK: Header conveniences

    /// Bit 15 of `flags`: the client cannot receive unicast before it is configured, so replies must be broadcast.
    public var broadcastFlag: Bool {
        get { flags & Self.broadcastFlagBit != 0 }
        set { flags = newValue ? flags | Self.broadcastFlagBit : flags & ~Self.broadcastFlagBit }
    }

    /// The client's Ethernet address, when the header says `chaddr` holds one.
    public var clientMAC: MACAddress? {
        guard htype == Self.ethernetHardwareType, hlen == 6 else { return nil }
        return MACAddress(bytes: chaddr.prefix(6))
    }

    /// Marks the hardware as Ethernet and stores `mac` in `chaddr`.
    public mutating func setClientMAC(_ mac: MACAddress) {
        htype = Self.ethernetHardwareType
        hlen = 6
        chaddr = mac.bytes
    }

    // MARK: Option accessors

    public var messageType: DHCPMessageType? {
        guard let value = options[.messageType], value.count == 1 else { return nil }
        return DHCPMessageType(rawValue: value[0])
    }

    public var requestedIPAddress: IPv4Address? { address(for: .requestedIPAddress) }
    public var serverIdentifier: IPv4Address? { address(for: .serverIdentifier) }
    public var hostName: String? { string(for: .hostName) }
    public var leaseTime: UInt32? { uint32(for: .leaseTime) }
    public var maximumMessageSize: UInt16? { uint16(for: .maximumMessageSize) }
    /// Opaque bytes (RFC 2132 §9.14): usually a type byte (1 = Ethernet) and the MAC, but any value is legal.
    public var clientIdentifier: [UInt8]? { options[.clientIdentifier] }
    /// Read as text because clients send text here ("PXEClient:Arch:00007:UNDI:003016", "udhcp 1.35.0").
    public var vendorClassIdentifier: String? { string(for: .vendorClassIdentifier) }

    public var parameterRequestList: [DHCPOptionCode]? {
        options[.parameterRequestList]?.map(DHCPOptionCode.init(rawValue:))
    }

    /// The option as one address; nil when absent or not exactly 4 bytes.
    public func address(for code: DHCPOptionCode) -> IPv4Address? {
        options[code].flatMap { IPv4Address(networkBytes: $0) }
    }

    /// The option as a list of addresses; nil when absent or not a multiple of 4 bytes.
    public func addresses(for code: DHCPOptionCode) -> [IPv4Address]? {
        guard let value = options[code], value.count % 4 == 0 else { return nil }
        return stride(from: 0, to: value.count, by: 4).compactMap { IPv4Address(networkBytes: value[$0..<$0 + 4]) }
    }

    /// The option as a big-endian 32-bit number; nil when absent or not exactly 4 bytes.
    public func uint32(for code: DHCPOptionCode) -> UInt32? {
        guard let value = options[code], value.count == 4 else { return nil }
        return Self.bigEndianInteger(value[...])
    }

    /// The option as a big-endian 16-bit number; nil when absent or not exactly 2 bytes.
    public func uint16(for code: DHCPOptionCode) -> UInt16? {
        guard let value = options[code], value.count == 2 else { return nil }
        return Self.bigEndianInteger(value[...])
    }

    /// The option as UTF-8 text, without the trailing NULs that RFC 2132 §2 tells receivers to drop.
    public func string(for code: DHCPOptionCode) -> String? {
        guard let value = options[code] else { return nil }
        let end = value.lastIndex { $0 != 0 }.map { $0 + 1 } ?? 0
        return String(decoding: value[..<end], as: UTF8.self)
    }

    /// Sets an option's data, keeping its place if already present and appending it otherwise.
    /// Pad, end and option overload are ignored: the codec writes those itself.
    public mutating func set(_ code: DHCPOptionCode, bytes: [UInt8]) {
        guard !DHCPOptionCode.framing.contains(code) else { return }
        if options.updateValue(bytes, forKey: code) == nil {
            optionOrder.append(code)
        }
    }

    public mutating func removeOption(_ code: DHCPOptionCode) {
        guard options.removeValue(forKey: code) != nil else { return }
        optionOrder.removeAll { $0 == code }
    }

    public mutating func setAddress(_ code: DHCPOptionCode, to address: IPv4Address) {
        set(code, bytes: address.octets)
    }

    public mutating func setAddresses(_ code: DHCPOptionCode, to addresses: [IPv4Address]) {
        set(code, bytes: addresses.flatMap(\.octets))
    }

    public mutating func setUInt32(_ code: DHCPOptionCode, to value: UInt32) {
        set(code, bytes: Self.bigEndianBytes(value))
    }

    public mutating func setUInt16(_ code: DHCPOptionCode, to value: UInt16) {
        set(code, bytes: [UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)])
    }

    /// Stores the UTF-8 bytes without a terminating NUL (RFC 2132 §2).
    public mutating func setString(_ code: DHCPOptionCode, to value: String) {
        set(code, bytes: Array(value.utf8))
    }

    public mutating func setMessageType(_ type: DHCPMessageType) {
        set(.messageType, bytes: [type.rawValue])
    }

    // MARK: Replies

    /// A server reply to `request` following RFC 2131 table 3: same xid, flags, giaddr and hardware
    /// address, `op` = reply, hops/secs zero, and options 53 and 54 set first. `ciaddr` is echoed only
    /// in an ACK (the table's "ciaddr from DHCPREQUEST or 0"). For a NAK, pass `.zero` as `yiaddr`.
    public static func reply(
        to request: DHCPPacket, type: DHCPMessageType, yiaddr: IPv4Address, serverIdentifier: IPv4Address
    ) -> DHCPPacket {
        var reply = DHCPPacket(
            op: bootReply, htype: request.htype, hlen: request.hlen, xid: request.xid, flags: request.flags,
            ciaddr: type == .ack ? request.ciaddr : .zero, yiaddr: yiaddr, giaddr: request.giaddr, chaddr: request.chaddr)
        reply.setMessageType(type)
        reply.setAddress(.serverIdentifier, to: serverIdentifier)
        return reply
    }

    // MARK: Parsing

    /// Decodes a UDP payload. Never traps: anything malformed throws a `DHCPPacketError`.
    public static func parse(_ bytes: [UInt8]) throws(DHCPPacketError) -> DHCPPacket {
        guard bytes.count >= minimumSize else { throw DHCPPacketError(.tooShort) }
        guard bytes.count <= maximumSize else { throw DHCPPacketError(.oversized) }
        guard bytes[Offset.cookie..<Offset.options].elementsEqual(magicCookie) else { throw DHCPPacketError(.badMagicCookie) }
        guard Int(bytes[2]) <= chaddrSize else { throw DHCPPacketError(.badLength) }

        let snameField = bytes[Offset.sname..<Offset.file]
        let fileField = bytes[Offset.file..<Offset.cookie]
        var reader = OptionReader()
        try reader.read(bytes[Offset.options...], mayOverload: true)

        var overload: UInt8 = 0
        if let value = reader.overload {
            guard value.count == 1, (1...3).contains(value[0]) else { throw DHCPPacketError(.badOptionOverload) }
            overload = value[0]
        }
        let fileHoldsOptions = overload & 1 != 0
        let snameHoldsOptions = overload & 2 != 0
        // RFC 3396 §7: the options field, then file, then sname, so concatenation comes out in that order.
        if fileHoldsOptions { try reader.read(fileField, mayOverload: false) }
        if snameHoldsOptions { try reader.read(snameField, mayOverload: false) }

        guard let messageType = reader.options[.messageType] else { throw DHCPPacketError(.missingMessageType) }
        guard messageType.count == 1, DHCPMessageType(rawValue: messageType[0]) != nil else {
            throw DHCPPacketError(.invalidMessageType)
        }

        var packet = DHCPPacket(
            op: bytes[0], htype: bytes[1], hlen: bytes[2], hops: bytes[3],
            xid: bigEndianInteger(bytes[4..<8]), secs: bigEndianInteger(bytes[8..<10]), flags: bigEndianInteger(bytes[10..<12]),
            ciaddr: IPv4Address(rawValue: bigEndianInteger(bytes[12..<16])),
            yiaddr: IPv4Address(rawValue: bigEndianInteger(bytes[16..<20])),
            siaddr: IPv4Address(rawValue: bigEndianInteger(bytes[20..<24])),
            giaddr: IPv4Address(rawValue: bigEndianInteger(bytes[24..<28])),
            chaddr: Array(bytes[Offset.chaddr..<Offset.sname]),
            sname: snameHoldsOptions ? "" : Self.text(inField: snameField),
            file: fileHoldsOptions ? "" : Self.text(inField: fileField))
        packet.options = reader.options
        packet.optionOrder = reader.order
        return packet
    }

    /// Collects options from one or more fields, concatenating repeated codes (RFC 3396).
    private struct OptionReader {
        var options: [DHCPOptionCode: [UInt8]] = [:]
        var order: [DHCPOptionCode] = []
        /// Option 52's data, kept apart because it steers parsing rather than being content.
        var overload: [UInt8]?

        /// Reads until an end option or the end of the field. A missing end option is tolerated,
        /// as many clients omit it when the options fill the packet exactly.
        mutating func read(_ field: ArraySlice<UInt8>, mayOverload: Bool) throws(DHCPPacketError) {
            var index = field.startIndex
            while index < field.endIndex {
                let code = DHCPOptionCode(field[index])
                index += 1
                if code == .pad { continue }
                if code == .end { return }
                guard index < field.endIndex else { throw DHCPPacketError(.truncatedOption) }
                let length = Int(field[index])
                index += 1
                guard length <= field.endIndex - index else { throw DHCPPacketError(.truncatedOption) }
                let data = field[index..<index + length]
                index += length
                if code == .optionOverload {
                    // Only the options field may point elsewhere (RFC 2131 §4.1); a copy inside file/sname is ignored.
                    if mayOverload { overload = (overload ?? []) + data }
                } else {
                    if options[code] == nil { order.append(code) }
                    options[code, default: []].append(contentsOf: data)
                }
            }
        }
    }

    // MARK: Serializing

    /// Encodes the header, the magic cookie, the options in `optionOrder` and an end option,
    /// zero-padded to `bootpMinimumSize`. Options over 255 bytes are split into consecutive
    /// instances of the same code, which receivers concatenate (RFC 3396).
    public func serialize() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.bootpMinimumSize)
        bytes += [op, htype, hlen, hops]
        bytes += Self.bigEndianBytes(xid)
        bytes += [UInt8(truncatingIfNeeded: secs >> 8), UInt8(truncatingIfNeeded: secs)]
        bytes += [UInt8(truncatingIfNeeded: flags >> 8), UInt8(truncatingIfNeeded: flags)]
        for address in [ciaddr, yiaddr, siaddr, giaddr] {
            bytes += address.octets
        }
        bytes += Self.fitted(chaddr, count: Self.chaddrSize)
        bytes += Self.fitted(Array(sname.utf8), count: Self.snameCapacity + 1)
        bytes += Self.fitted(Array(file.utf8), count: Self.fileCapacity + 1)
        bytes += Self.magicCookie
        for code in optionOrder {
            guard let value = options[code] else { continue }
            var start = 0
            repeat {
                let chunk = value[start..<min(start + 255, value.count)]
                bytes.append(code.rawValue)
                bytes.append(UInt8(chunk.count))
                bytes += chunk
                start += 255
            } while start < value.count
        }
        bytes.append(DHCPOptionCode.end.rawValue)
        if bytes.count < Self.bootpMinimumSize {
            bytes += repeatElement(0, count: Self.bootpMinimumSize - bytes.count)
        }
        return bytes
    }

    // MARK: Helpers

    /// Callers pass exactly `T`'s width in bytes, most significant first.
    private static func bigEndianInteger<T: FixedWidthInteger & UnsignedInteger>(_ bytes: ArraySlice<UInt8>) -> T {
        bytes.reduce(0) { $0 << 8 | T($1) }
    }

    private static func bigEndianBytes(_ value: UInt32) -> [UInt8] {
        [
            UInt8(truncatingIfNeeded: value >> 24), UInt8(truncatingIfNeeded: value >> 16),
            UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value),
        ]
    }

    /// Zero-pads or cuts `bytes` to exactly `count`.
    private static func fitted(_ bytes: [UInt8], count: Int) -> [UInt8] {
        bytes.count == count ? bytes : Array(bytes.prefix(count)) + repeatElement(0, count: max(0, count - bytes.count))
    }

    /// The text before the first NUL of a fixed header field. Invalid UTF-8 becomes U+FFFD, so the
    /// result may need cutting to fit again; `fieldText` does that, on whole scalars.
    private static func text(inField field: ArraySlice<UInt8>) -> String {
        String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// `text` cut at its first NUL and to at most `capacity` UTF-8 bytes without splitting a scalar,
    /// so that what is stored is exactly what serializing writes and parsing reads back.
    private static func fieldText(_ text: String, capacity: Int) -> String {
        if text.utf8.count <= capacity && !text.utf8.contains(0) { return text }
        var kept = String.UnicodeScalarView()
        var used = 0
        for scalar in text.unicodeScalars {
            let width = UTF8.width(scalar)
            guard scalar != "\0", used + width <= capacity else { break }
            kept.append(scalar)
            used += width
        }
        return String(kept)
    }
}
