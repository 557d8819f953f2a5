import Foundation
import Hummingbird

/// The files under a root folder, for `FileMiddleware`: a path whose real location (symbolic
/// links resolved) is outside the root is treated as missing, so `/common/…` never serves a file
/// from elsewhere. File system calls run off the cooperative pool (``BlockingIO`` for stat and
/// realpath, Hummingbird's `FileIO` on NIO's thread pool for the bytes).
struct ConfinedFileSystem: FileProvider {
    struct FileAttributes: Sendable, FileMiddlewareFileAttributes {
        let isFolder: Bool
        let size: Int
        let modificationDate: Date
    }

    /// The path below the root, as the request named it (percent-decoded by FileMiddleware).
    typealias FileIdentifier = String

    let root: String
    private let fileIO = FileIO()

    init(root: String) { self.root = root }

    func getFileIdentifier(_ path: String) -> String? {
        // FileMiddleware refuses `..` itself; NUL and other control bytes never name a file here.
        guard !path.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else { return nil }
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        guard !segments.contains(where: { $0 == ".." || $0 == "." }) else { return nil }
        return segments.joined(separator: "/")
    }

    func getAttributes(id: String) async throws -> FileAttributes? {
        let root = self.root
        return try await BlockingIO.run {
            guard let real = Self.confinedPath(root: root, relative: id) else { return nil }
            var status = stat()
            guard stat(real, &status) == 0 else { return nil }
            let kind = status.st_mode & S_IFMT
            guard kind == S_IFREG || kind == S_IFDIR else { return nil }
            return FileAttributes(
                isFolder: kind == S_IFDIR, size: Int(status.st_size),
                modificationDate: Date(timeIntervalSince1970: TimeInterval(status.st_mtim.tv_sec)))
        }
    }

    func loadFile(id: String, context: some RequestContext) async throws -> ResponseBody {
        try await fileIO.loadFile(path: try await resolved(id), context: context)
    }

    func loadFile(id: String, range: ClosedRange<Int>, context: some RequestContext) async throws -> ResponseBody {
        try await fileIO.loadFile(path: try await resolved(id), range: range, context: context)
    }

    /// Resolved again at load time, so a link changed since the attributes were read cannot lead out.
    private func resolved(_ id: String) async throws -> String {
        let root = self.root
        guard let real = try await BlockingIO.run({ Self.confinedPath(root: root, relative: id) }) else { throw HTTPError(.notFound) }
        return real
    }

    /// The real path of `root/relative` when it exists and is inside the real root; nil otherwise. Blocks.
    static func confinedPath(root: String, relative: String) -> String? {
        guard let realRoot = realPath(root), let real = realPath(relative.isEmpty ? root : root + "/" + relative) else { return nil }
        let prefix = realRoot.hasSuffix("/") ? realRoot : realRoot + "/"
        guard real == realRoot || real.hasPrefix(prefix) else { return nil }
        return real
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
