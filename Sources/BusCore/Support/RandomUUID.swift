import Glibc
import Synchronization

/// Random (version 4) UUIDs as lowercase text, the form RackHD's ids take. Foundation's
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

    public static func make() -> String {
        var bytes = pool.withLock { $0.take16() }
        return withUnsafeMutableBytes(of: &bytes) { raw in
            raw[6] = raw[6] & 0x0F | 0x40  // version 4
            raw[8] = raw[8] & 0x3F | 0x80  // RFC 4122 variant
            return String(unsafeUninitializedCapacity: 36) { text in
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
}
