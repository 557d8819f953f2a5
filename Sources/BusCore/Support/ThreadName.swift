import Foundation
import Glibc

extension Thread {
    /// Names the calling thread, for Foundation and for the kernel, where gdb, `top -H` and
    /// /proc show it. Foundation alone does not always reach the kernel: a thread that names
    /// itself before its parent has recorded it keeps the name it inherited.
    static func nameCurrent(_ name: String) {
        Thread.current.name = name
        let descriptor = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        // The kernel keeps at most 15 bytes.
        let bytes = Array(name.utf8.prefix(15))
        _ = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    }
}
