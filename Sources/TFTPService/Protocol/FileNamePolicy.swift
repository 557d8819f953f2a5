/// Which requested names may be looked up under the root, as a pure function. The file system
/// check (symlinks that resolve outside the root) comes after, in ``FileResolver``.
///
/// A leading `/` is read relative to the root, as tftpd-hpa's `--secure` does: PXE clients often
/// ask for `/pxelinux.0`, and `/etc/passwd` becomes `<root>/etc/passwd`, never the host's file.
/// Empty and `.` components are dropped; any `..` component is refused, even one that would stay
/// inside the root.
public enum FileNamePolicy {
    /// Longer names are refused (Linux's PATH_MAX is 4096; no boot file name comes near 1024).
    public static let maximumNameBytes = 1024

    public enum Refusal: Error, Sendable, Equatable {
        case empty
        case tooLong
        case containsNUL
        case notUTF8
        case parentDirectory

        public var message: String {
            switch self {
            case .empty: "no file name"
            case .tooLong: "file name longer than \(FileNamePolicy.maximumNameBytes) bytes"
            case .containsNUL: "file name contains NUL"
            case .notUTF8: "file name is not UTF-8"
            case .parentDirectory: "file name leaves the root (..)"
            }
        }
    }

    /// The name's path components under the root.
    public static func components(of name: [UInt8]) throws(Refusal) -> [String] {
        guard name.count <= maximumNameBytes else { throw .tooLong }
        guard !name.contains(0) else { throw .containsNUL }
        guard let text = String(validating: name, as: UTF8.self) else { throw .notUTF8 }
        let components = text.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }.map(String.init)
        guard !components.contains("..") else { throw .parentDirectory }
        guard !components.isEmpty else { throw .empty }
        return components
    }
}
