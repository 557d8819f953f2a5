/// Writes JSON into bytes directly, for the bodies that go out with every task: Foundation's
/// `JSONEncoder` builds a tree of boxed values through `Encoder`'s generic containers first,
/// which cost more than the rest of a task's work on this side of the bus.
///
/// The output is what `JSONEncoder` writes for the same value, keys in the same order, except
/// that `/` is not escaped (`\/` and `/` are the same JSON string).
public struct JSONWriter: Sendable {
    public private(set) var bytes: [UInt8]
    /// Whether the next value or key follows another one at the same level and needs a comma.
    private var followsValue = false

    /// A value JSON cannot hold (a NaN or an infinity): `JSONEncoder` refuses it too.
    public struct Unrepresentable: Error, Sendable {
        public let value: Double
    }

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    // MARK: Structure

    public mutating func beginObject() {
        separate()
        bytes.append(UInt8(ascii: "{"))
        followsValue = false
    }

    public mutating func endObject() {
        bytes.append(UInt8(ascii: "}"))
        followsValue = true
    }

    public mutating func beginArray() {
        separate()
        bytes.append(UInt8(ascii: "["))
        followsValue = false
    }

    public mutating func endArray() {
        bytes.append(UInt8(ascii: "]"))
        followsValue = true
    }

    public mutating func key(_ key: String) {
        separate()
        appendQuoted(key)
        bytes.append(UInt8(ascii: ":"))
        followsValue = false
    }

    // MARK: Values

    public mutating func string(_ value: String) {
        separate()
        appendQuoted(value)
        followsValue = true
    }

    public mutating func int(_ value: Int) {
        separate()
        appendDecimal(value)
        followsValue = true
    }

    public mutating func bool(_ value: Bool) {
        separate()
        appendASCII(value ? "true" : "false")
        followsValue = true
    }

    public mutating func null() {
        separate()
        appendASCII("null")
        followsValue = true
    }

    /// As ``JSONValue``'s `Encodable` conformance writes it: whole numbers without a fraction.
    public mutating func number(_ value: Double) throws(Unrepresentable) {
        guard value.isFinite else { throw Unrepresentable(value: value) }
        separate()
        if value.rounded() == value, abs(value) < 1e15 {
            appendDecimal(Int(value))
        } else {
            appendASCII(value.description)
        }
        followsValue = true
    }

    public mutating func value(_ value: JSONValue) throws(Unrepresentable) {
        switch value {
        case .null: null()
        case .bool(let flag): bool(flag)
        case .number(let number): try self.number(number)
        case .string(let text): string(text)
        case .array(let elements):
            beginArray()
            for element in elements { try self.value(element) }
            endArray()
        case .object(let members): try object(members)
        }
    }

    public mutating func object(_ members: [String: JSONValue]) throws(Unrepresentable) {
        beginObject()
        for (name, member) in members {
            key(name)
            try value(member)
        }
        endObject()
    }

    /// A `[String: String]`, as `JSONEncoder` writes a dictionary of strings.
    public mutating func object(_ members: [String: String]) {
        beginObject()
        for (name, member) in members {
            key(name)
            string(member)
        }
        endObject()
    }

    // MARK: Members: an optional that is nil is left out, as synthesized `Encodable` does

    public mutating func member(_ name: String, _ value: String) {
        key(name)
        string(value)
    }

    public mutating func member(_ name: String, _ value: String?) {
        guard let value else { return }
        member(name, value)
    }

    public mutating func member(_ name: String, _ value: Int) {
        key(name)
        int(value)
    }

    public mutating func member(_ name: String, _ value: Bool) {
        key(name)
        bool(value)
    }

    public mutating func member(_ name: String, _ value: [String: JSONValue]) throws(Unrepresentable) {
        key(name)
        try object(value)
    }

    public mutating func member(_ name: String, _ value: [String: JSONValue]?) throws(Unrepresentable) {
        guard let value else { return }
        try member(name, value)
    }

    public mutating func member(_ name: String, _ value: JSONValue?) throws(Unrepresentable) {
        guard let value else { return }
        key(name)
        try self.value(value)
    }

    public mutating func member<Value: RawRepresentable<String>>(_ name: String, _ value: Value?) {
        guard let value else { return }
        member(name, value.rawValue)
    }

    // MARK: Bytes

    private mutating func separate() {
        if followsValue { bytes.append(UInt8(ascii: ",")) }
    }

    private mutating func appendASCII(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    private mutating func appendASCII(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }

    private mutating func appendDecimal(_ value: Int) {
        if value == 0 {
            bytes.append(UInt8(ascii: "0"))
            return
        }
        var magnitude = value.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for 20 digits
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            while magnitude > 0 {
                buffer[23 - count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            }
            if value < 0 { bytes.append(UInt8(ascii: "-")) }
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[(24 - count)...]))
        }
    }

    private static let hex = Array("0123456789abcdef".utf8)

    /// Quotes and escapes as `JSONEncoder` does: `"`, `\` and control characters, the common
    /// ones by their short names.
    private mutating func appendQuoted(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { utf8 in
            var runStart = 0
            for (index, byte) in utf8.enumerated() where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index]))
                runStart = index + 1
                bytes.append(UInt8(ascii: "\\"))
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes.append(byte)
                case 0x0A: bytes.append(UInt8(ascii: "n"))
                case 0x0D: bytes.append(UInt8(ascii: "r"))
                case 0x09: bytes.append(UInt8(ascii: "t"))
                case 0x08: bytes.append(UInt8(ascii: "b"))
                case 0x0C: bytes.append(UInt8(ascii: "f"))
                default:
                    bytes.append(contentsOf: [
                        UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), Self.hex[Int(byte >> 4)], Self.hex[Int(byte & 0xF)],
                    ])
                }
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
