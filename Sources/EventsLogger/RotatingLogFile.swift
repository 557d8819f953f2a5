import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A log file that rotates by size (see ``LogFileOptions``). Blocking POSIX I/O: used only by
/// the output thread (``OutputWriter``), never from a task.
final class RotatingLogFile {
    let path: String
    let maximumBytes: Int
    let keptFiles: Int
    private var descriptor: Int32
    /// Bytes in the current file.
    private(set) var size: Int

    init(_ options: LogFileOptions) throws {
        path = options.path
        maximumBytes = max(1024, options.maximumBytes)
        keptFiles = max(1, options.keptFiles)
        let directory = URL(fileURLWithPath: options.path).deletingLastPathComponent()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        (descriptor, size) = try Self.openForAppending(options.path)
    }

    deinit {
        close(descriptor)
    }

    /// `events.log` for generation 0, `events.log.<n>` for older ones.
    static func path(of base: String, generation: Int) -> String {
        generation == 0 ? base : "\(base).\(generation)"
    }

    /// Appends whole lines (each gets a newline), rotating first whenever the next line would
    /// take the file past its limit. A line longer than the limit gets a file of its own.
    func append(lines: [String]) throws {
        var chunk: [UInt8] = []
        chunk.reserveCapacity(min(maximumBytes, lines.reduce(0) { $0 + $1.utf8.count + 1 }))
        for line in lines {
            let length = line.utf8.count + 1
            if size + chunk.count + length > maximumBytes, size + chunk.count > 0 {
                try writeAll(chunk)
                chunk.removeAll(keepingCapacity: true)
                try rotate()
            }
            chunk.append(contentsOf: line.utf8)
            chunk.append(UInt8(ascii: "\n"))
        }
        try writeAll(chunk)
    }

    /// Shifts `events.log.<n>` to `.<n+1>` (dropping the oldest), the current file to `.1`, and
    /// starts a new one.
    func rotate() throws {
        close(descriptor)
        descriptor = -1
        let oldest = Self.path(of: path, generation: keptFiles - 1)
        unlink(oldest)
        if keptFiles > 1 {
            for generation in stride(from: keptFiles - 2, through: 0, by: -1) {
                // A missing generation (a young log) is not an error.
                rename(Self.path(of: path, generation: generation), Self.path(of: path, generation: generation + 1))
            }
        }
        (descriptor, size) = try Self.openForAppending(path)
    }

    private func writeAll(_ bytes: [UInt8]) throws {
        guard !bytes.isEmpty else { return }
        if descriptor < 0 {
            // A rotation that failed to reopen: try again rather than lose every later line.
            (descriptor, size) = try Self.openForAppending(path)
        }
        try Self.writeAll(bytes, to: descriptor)
        size += bytes.count
    }

    /// Writes every byte to `descriptor`, retrying short writes and interruptions.
    static func writeAll(_ bytes: [UInt8], to descriptor: Int32) throws {
        try bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    throw OutputError(operation: "write", path: nil, code: errno)
                }
                offset += written
            }
        }
    }

    private static func openForAppending(_ path: String) throws -> (descriptor: Int32, size: Int) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw OutputError(operation: "open", path: path, code: errno) }
        let end = lseek(descriptor, 0, SEEK_END)
        return (descriptor, max(0, Int(end)))
    }
}

/// A failed system call of the output side.
struct OutputError: Error, CustomStringConvertible {
    var operation: String
    var path: String?
    var code: Int32

    var description: String {
        "\(operation)\(path.map { " \($0)" } ?? ""): \(String(cString: strerror(code)))"
    }
}
