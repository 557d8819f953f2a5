import Glibc
import Synchronization

/// UUIDs as lowercase text, the form RackHD's ids take: random (version 4), or ordered by time
/// (version 7) for ids that key stored rows. Foundation's
/// `UUID()` opens and reads `/dev/urandom` for each one on Linux (four system calls), and a
/// graph makes a few per task; these are taken
/// from the system's generator 4 KB at a time.
public enum RandomUUID {
    private struct Pool {
        var bytes = [UInt8](repeating: 0, count: 4096)
        var next = 4096

        mutating func take16() -> (UInt64, UInt64) {
            if next + 16 > bytes.count {
                // glibc's arc4random: the kernel's generator behind a per-thread buffer.
                bytes.withUnsafeMutableBytes { raw in arc4random_buf(raw.baseAddress!, raw.count) }
                next = 0
            }
            defer { next += 16 }
            return bytes.withUnsafeBytes { raw in
                (raw.loadUnaligned(fromByteOffset: next, as: UInt64.self), raw.loadUnaligned(fromByteOffset: next + 8, as: UInt64.self))
            }
        }
    }

    private static let pool = Mutex(Pool())

    /// A random (version 4) UUID.
    public static func make() -> String {
        var bytes = pool.withLock { $0.take16() }
        return withUnsafeMutableBytes(of: &bytes) { raw in
            raw[6] = raw[6] & 0x0F | 0x40  // version 4
            raw[8] = raw[8] & 0x3F | 0x80  // RFC 4122 variant
            return text(raw)
        }
    }

    /// A version 7 UUID (RFC 9562): the milliseconds since 1970 first, then 74 random bits. Ids
    /// made one after another sort near each other, so a store keyed by them adds each row
    /// beside the last instead of into a random page of its index: SQLite then writes a few
    /// pages per commit, not one per row.
    public static func timeOrdered() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let milliseconds = UInt64(now.tv_sec) &* 1000 &+ UInt64(now.tv_nsec) / 1_000_000
        var bytes = pool.withLock { $0.take16() }
        return withUnsafeMutableBytes(of: &bytes) { raw in
            for index in 0..<6 { raw[index] = UInt8(truncatingIfNeeded: milliseconds >> (8 * (5 - index))) }
            raw[6] = raw[6] & 0x0F | 0x70  // version 7
            raw[8] = raw[8] & 0x3F | 0x80  // RFC 4122 variant
            return text(raw)
        }
    }

    /// The least version 7 UUID of the millisecond `milliseconds` after 1970: every one made
    /// earlier sorts before it, as text too.
    public static func firstTimeOrdered(atMillisecond milliseconds: UInt64) -> String {
        var bytes: (UInt64, UInt64) = (0, 0)
        return withUnsafeMutableBytes(of: &bytes) { raw in
            for index in 0..<6 { raw[index] = UInt8(truncatingIfNeeded: milliseconds >> (8 * (5 - index))) }
            raw[6] = 0x70
            raw[8] = 0x80
            return text(raw)
        }
    }

    /// Lowercase text, 8-4-4-4-12.
    private static func text(_ raw: UnsafeMutableRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: 36) { text in
            let digits: StaticString = "0123456789abcdef"
            var position = 0
            for index in 0..<16 {
                if index == 4 || index == 6 || index == 8 || index == 10 {
                    text[position] = UInt8(ascii: "-")
                    position += 1
                }
                text[position] = digits.utf8Start[Int(raw[index] >> 4)]
                text[position + 1] = digits.utf8Start[Int(raw[index] & 0x0F)]
                position += 2
            }
            return position
        }
    }
}
