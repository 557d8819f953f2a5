import NIOCore

/// The two RFC 1350 modes a read can use. `mail` is refused (RFC 1350 makes it write-only).
public enum TransferMode: Sendable, Equatable {
    case octet
    /// Text sent as NVT-ASCII: every LF becomes CR LF and every CR becomes CR NUL.
    case netascii

    /// The mode named in a request (case-insensitive), or nil for an unknown mode.
    public init?(requestMode: String) {
        switch requestMode.lowercased() {
        case "octet": self = .octet
        case "netascii": self = .netascii
        default: return nil
        }
    }
}

/// The netascii conversion for sending from a Unix file. Each input byte maps on its own, so a
/// file converts chunk by chunk and its converted size is known from one counting pass.
public enum Netascii {
    /// How many bytes `bytes` become on the wire.
    public static func encodedCount<Bytes: Sequence<UInt8>>(of bytes: Bytes) -> Int {
        var count = 0
        for byte in bytes {
            count += (byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r")) ? 2 : 1
        }
        return count
    }

    /// Appends the netascii form of `chunk` to `output`.
    public static func encode(_ chunk: ByteBuffer, into output: inout ByteBuffer) {
        output.reserveCapacity(minimumWritableBytes: chunk.readableBytes * 2)
        chunk.withUnsafeReadableBytes { bytes in
            var runStart = 0
            for (index, byte) in bytes.enumerated() where byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[runStart..<index]))
                output.writeBytes(byte == UInt8(ascii: "\n") ? [UInt8(ascii: "\r"), UInt8(ascii: "\n")] : [UInt8(ascii: "\r"), 0])
                runStart = index + 1
            }
            output.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[runStart...]))
        }
    }
}
