/// A 48-bit Ethernet hardware address.
public struct MACAddress: Hashable, Sendable, Codable, CustomStringConvertible, LosslessStringConvertible {
    /// The six bytes in the low 48 bits, first byte most significant; a single integer keeps
    /// hashing and equality cheap for lease tables keyed by MAC.
    private let value: UInt64

    public init(octets: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)) {
        value = [octets.0, octets.1, octets.2, octets.3, octets.4, octets.5].reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Nil unless there are exactly six bytes.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 6 else { return nil }
        value = bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Accepts exactly what RackHD's `^([0-9a-fA-F][0-9a-fA-F]:){5}([0-9a-fA-F][0-9a-fA-F])$` accepts:
    /// six two-digit hex groups separated by colons, either case, nothing around them.
    public init?(_ description: String) {
        let characters = Array(description.utf8)
        guard characters.count == 17 else { return nil }
        var value: UInt64 = 0
        for group in 0..<6 {
            let start = group * 3
            if group < 5 && characters[start + 2] != UInt8(ascii: ":") { return nil }
            guard let high = Self.hexDigitValue(characters[start]), let low = Self.hexDigitValue(characters[start + 1]) else {
                return nil
            }
            value = value << 8 | UInt64(high << 4 | low)
        }
        self.value = value
    }

    public var bytes: [UInt8] {
        (0..<6).map { UInt8(truncatingIfNeeded: value >> (40 - 8 * $0)) }
    }

    /// Lowercase with colons, e.g. `00:11:22:aa:bb:cc`.
    public var description: String {
        bytes.map(Self.hex).joined(separator: ":")
    }

    /// Lowercase without separators, e.g. `001122aabbcc` (the form used in file and host names).
    public var compactHex: String {
        bytes.map(Self.hex).joined()
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let address = MACAddress(text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "Not a colon-separated MAC address: \(text)")
        }
        self = address
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    private static func hexDigitValue(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): character - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): character - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]], as: UTF8.self)
    }
}
