import Glibc
import Mustache
import NIOCore

/// What a read request will send.
enum TransferContent: Sendable {
    /// An open regular file (the descriptor belongs to the transfer from here on), sent in
    /// chunks; `size` is its length on disk, `wireSize` what the mode makes of it.
    case file(descriptor: CInt, size: Int, wireSize: Int)
    /// Rendered template bytes, already in the request's mode.
    case bytes([UInt8])

    var wireSize: Int {
        switch self {
        case .file(_, _, let wireSize): wireSize
        case .bytes(let bytes): bytes.count
        }
    }
}

enum Resolution: Sendable {
    case content(TransferContent)
    case refused(TFTPErrorCode, String)
}

/// Turns a checked name into something to send. Every call touches the file system (realpath,
/// open, fstat, read), so it runs on NIO's thread pool, never on an event loop or the
/// cooperative pool.
struct FileResolver: Sendable {
    /// The root with every symlink resolved (realpath), without a trailing `/`.
    let root: String
    let ipxeDirectory: String?
    let bootURL: String
    let serverAddress: String

    /// Templates are read whole to be rendered; a bigger `.ipxe` is refused.
    static let maximumTemplateBytes = 1 << 20

    func resolve(_ components: [String], mode: TransferMode, clientAddress: String) -> Resolution {
        let name = components.joined(separator: "/")
        let isTemplate = name.lowercased().hasSuffix(".ipxe")
        switch locate(root + "/" + name, inside: root) {
        case .found(let path):
            return open(path, mode: mode, template: isTemplate, clientAddress: clientAddress)
        case .refused(let code, let message):
            return .refused(code, message)
        case .missing:
            break
        }
        // Built-in files, only when the root has none of that name.
        if components.count == 1, let directory = ipxeDirectory, TFTPConfiguration.builtInIPXEFiles.contains(name),
            case .found(let path) = locate(directory + "/" + name, inside: nil)
        {
            return open(path, mode: mode, template: false, clientAddress: clientAddress)
        }
        if components == ["boot.ipxe"] {
            return render(BootTemplate.text, mode: mode, clientAddress: clientAddress)
        }
        return .refused(.fileNotFound, "file not found")
    }

    private enum Location {
        case found(String)
        case missing
        case refused(TFTPErrorCode, String)
    }

    /// realpath, then the confinement check: the resolved path must lie under `container`.
    private func locate(_ path: String, inside container: String?) -> Location {
        guard let resolved = realpath(path, nil) else {
            switch errno {
            case ENOENT, ENOTDIR: return .missing
            default: return .refused(.accessViolation, "access violation")
            }
        }
        defer { free(resolved) }
        let text = String(cString: resolved)
        if let container {
            let prefix = container == "/" ? "/" : container + "/"
            // A symlink that leads outside the root is refused, wherever it points.
            guard text.hasPrefix(prefix) else { return .refused(.accessViolation, "access violation") }
        }
        return .found(text)
    }

    private func open(_ path: String, mode: TransferMode, template: Bool, clientAddress: String) -> Resolution {
        // O_NONBLOCK: opening a FIFO must not wait for a writer. O_NOFOLLOW: the path was
        // resolved a moment ago and must not have become a symlink since.
        let descriptor = Glibc.open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else {
            return errno == ENOENT ? .refused(.fileNotFound, "file not found") : .refused(.accessViolation, "access violation")
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            close(descriptor)
            return .refused(.accessViolation, "not a regular file")
        }
        let size = Int(info.st_size)
        if template {
            defer { close(descriptor) }
            guard size <= Self.maximumTemplateBytes, let bytes = readAll(descriptor, size: size) else {
                return .refused(.notDefined, "template too large or unreadable")
            }
            return render(String(decoding: bytes, as: UTF8.self), mode: mode, clientAddress: clientAddress)
        }
        switch mode {
        case .octet:
            return .content(.file(descriptor: descriptor, size: size, wireSize: size))
        case .netascii:
            guard let wireSize = netasciiSize(descriptor, size: size) else {
                close(descriptor)
                return .refused(.accessViolation, "file unreadable")
            }
            return .content(.file(descriptor: descriptor, size: size, wireSize: wireSize))
        }
    }

    private func render(_ template: String, mode: TransferMode, clientAddress: String) -> Resolution {
        guard let rendered = TemplateRenderer.render(template, bootURL: bootURL, tftpServer: serverAddress, clientAddress: clientAddress)
        else {
            return .refused(.notDefined, "template does not parse")
        }
        var bytes = Array(rendered.utf8)
        if mode == .netascii {
            var output = ByteBuffer()
            Netascii.encode(ByteBuffer(bytes: bytes), into: &output)
            bytes = output.readBytes(length: output.readableBytes) ?? []
        }
        return .content(.bytes(bytes))
    }

    private func readAll(_ descriptor: CInt, size: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let count = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + done, size - done, off_t(done)) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return nil }
            done += count
        }
        return bytes
    }

    /// One counting pass in 64 KiB reads: netascii's size is needed for `tsize` and for the
    /// number of blocks before the first one is sent.
    private func netasciiSize(_ descriptor: CInt, size: Int) -> Int? {
        var chunk = [UInt8](repeating: 0, count: 65536)
        var offset = 0
        var total = 0
        while offset < size {
            let count = chunk.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress!, min($0.count, size - offset), off_t(offset)) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return nil }
            total += Netascii.encodedCount(of: chunk[0..<count])
            offset += count
        }
        return total
    }
}

/// The templates' values: `{{bootURL}}`, `{{tftpServer}}`, `{{clientAddress}}`.
enum TemplateRenderer {
    /// Renders as plain text: the pragma turns off mustache's HTML escaping, so `&` in a URL stays `&`.
    static func render(_ template: String, bootURL: String, tftpServer: String, clientAddress: String) -> String? {
        guard let parsed = try? MustacheTemplate(string: "{{% CONTENT_TYPE: TEXT}}" + template) else { return nil }
        return parsed.render(["bootURL": bootURL, "tftpServer": tftpServer, "clientAddress": clientAddress])
    }
}
