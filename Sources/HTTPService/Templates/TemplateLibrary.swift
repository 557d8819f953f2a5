import BusCore
import Foundation
import Mustache
import NodeProtocol

/// Why a template could not be served.
public enum TemplateError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The name is not a plain file name (`preseed.cfg`, not `../x` or `a/b`).
    case invalidName(String)
    case notFound(String)
    /// An override file that does not parse as Mustache.
    case unreadable(String, reason: String)

    public var description: String {
        switch self {
        case .invalidName(let name): "'\(name.prefix(64))' is not a template name (a plain file name)"
        case .notFound(let name): "there is no template named \(name)"
        case .unreadable(let name, let reason): "the template \(name) cannot be used: \(reason)"
        }
    }
}

/// The values a template is rendered with.
public struct TemplateValues: Sendable, Equatable {
    public var bootURL: String
    public var apiBase: String
    public var nodeId: String
    public var macaddress: String
    public var profilesURL: String
    public var options: [String: JSONValue]
    public var node: Node?

    /// `ips`, when the request gave any, are kept in `profilesURL` so that a node asking again asks the same.
    public init(
        configuration: HTTPConfiguration, nodeId: String, macs: [String], ips: [String] = [], options: [String: JSONValue], node: Node?
    ) {
        bootURL = configuration.bootURL
        apiBase = configuration.apiBase
        self.nodeId = nodeId
        macaddress = macs.first ?? ""
        profilesURL =
            configuration.apiBase + "/profiles?macs=" + macs.joined(separator: ",")
            + (ips.isEmpty ? "" : "&ips=" + ips.joined(separator: ","))
        self.options = options
        self.node = node
    }

    /// The object Mustache walks: dictionaries, arrays, strings, numbers and booleans.
    var mustacheObject: [String: Any] {
        var object: [String: Any] = [
            "bootURL": bootURL, "apiBase": apiBase, "nodeId": nodeId, "macaddress": macaddress, "profilesURL": profilesURL,
            "options": Self.mustacheValue(.object(options)) ?? [String: Any](),
        ]
        if let node, let encoded = try? WireFormat.decode(JSONValue.self, from: WireFormat.encode(node)) {
            object["node"] = Self.mustacheValue(encoded)
        }
        return object
    }

    /// Whole numbers render without a fraction (`10000`, not `10000.0`); nulls are left out so
    /// that `{{^options.x}}` sections see them as missing.
    static func mustacheValue(_ value: JSONValue) -> Any? {
        switch value {
        case .null: return nil
        case .bool(let flag): return flag
        case .number(let number): return number.rounded() == number && abs(number) < 1e15 ? Int(number) : number
        case .string(let text): return text
        case .array(let items): return items.compactMap(mustacheValue)
        case .object(let fields): return fields.compactMapValues(mustacheValue)
        }
    }
}

/// The built-in templates, overridden or extended by the files of a directory. Rendering is text
/// (no HTML escaping): `&` in a URL stays `&`.
public struct TemplateLibrary: Sendable {
    private let builtIns: [String: MustacheTemplate]
    private let directory: String?
    // Templates are scripts, not images: a bigger file is a mistake, refused rather than rendered.
    private static let maximumFileBytes = 1 << 20

    public init(directory: String?) {
        self.directory = directory
        var parsed: [String: MustacheTemplate] = [:]
        for (name, text) in BuiltInTemplates.all {
            // The built-ins are part of the source; the template tests parse every one of them.
            if let template = try? Self.parse(text) { parsed[name] = template }
        }
        builtIns = parsed
    }

    /// A plain file name: not empty, no `/` or `\`, not starting with `.`, no control characters.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255 && !name.hasPrefix(".")
            && !name.unicodeScalars.contains { $0 == "/" || $0 == "\\" || $0.value < 0x20 || $0.value == 0x7f }
    }

    static func parse(_ text: String) throws -> MustacheTemplate {
        // The pragma makes every variable render as text, as if written with triple braces.
        try MustacheTemplate(string: "{{% CONTENT_TYPE: TEXT}}" + text)
    }

    /// The template `name`: the directory's file of that name, else the built-in one.
    public func template(named name: String) async throws(TemplateError) -> MustacheTemplate {
        guard Self.isValidName(name) else { throw .invalidName(name) }
        if let directory {
            let path = (directory as NSString).appendingPathComponent(name)
            let text: String?
            do {
                text = try await BlockingIO.run { try Self.readSmallFile(path) }
            } catch {
                throw .unreadable(name, reason: "\(error)")
            }
            if let text {
                do {
                    return try Self.parse(text)
                } catch {
                    throw .unreadable(name, reason: "\(error)")
                }
            }
        }
        guard let builtIn = builtIns[name] else { throw .notFound(name) }
        return builtIn
    }

    /// Renders the template `name` with `values`.
    public func render(_ name: String, values: TemplateValues) async throws(TemplateError) -> String {
        let template = try await template(named: name)
        return template.render(values.mustacheObject)
    }

    /// The file's text; nil when there is no regular file at `path`.
    private static func readSmallFile(_ path: String) throws -> String? {
        var status = stat()
        guard stat(path, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { return nil }
        guard Int(status.st_size) <= maximumFileBytes else {
            throw TemplateError.unreadable((path as NSString).lastPathComponent, reason: "larger than \(maximumFileBytes) bytes")
        }
        return try String(contentsOfFile: path, encoding: .utf8)
    }
}
