import BusCore

/// A template could not be rendered. `message` is the text RackHD users see, e.g.
/// `Value does not exist for options.nodeId`.
public struct TemplateRenderError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String

    public init(message: String) {
        self.message = message
    }

    public var description: String { message }
}

/// The names a template can refer to: `options.<path>`, `context.<path>`, `task.nodeId`, `task.graphId`,
/// `task.id`, and the shorthands `nodeId` and `graphId`.
public struct TemplateScope: Sendable {
    /// The root object paths are looked up in; callers may add further roots (RackHD also has `api`, `server`).
    public var values: [String: JSONValue]

    /// Names without a dot that are looked up rather than taken as literal text.
    static let shorthandNames: Set<String> = ["nodeId", "graphId"]

    public init(values: [String: JSONValue]) {
        self.values = values
    }

    public init(options: [String: JSONValue], context: [String: JSONValue], nodeId: String?, graphId: String?, taskId: String?) {
        var task: [String: JSONValue] = [:]
        task["id"] = taskId.map(JSONValue.string)
        task["nodeId"] = nodeId.map(JSONValue.string)
        task["graphId"] = graphId.map(JSONValue.string)
        var values: [String: JSONValue] = ["options": .object(options), "context": .object(context), "task": .object(task)]
        values["nodeId"] = nodeId.map(JSONValue.string)
        values["graphId"] = graphId.map(JSONValue.string)
        self.values = values
    }
}

/// RackHD-style option rendering: a Mustache subset (plain `{{x}}`, `{{{x}}}`, `{{&x}}` and `{{!comment}}`)
/// plus RackHD's extensions (fallback chains, nested rendering, typed single placeholders).
public enum OptionTemplate {
    /// How many times a looked-up value may itself be rendered again (RackHD's limit).
    public static let maximumDepth = 50
    /// Placeholders resolved in one call; stops inputs whose nested references fan out exponentially.
    public static let maximumExpansions = 100_000

    /// Renders every string inside `value` (recursively through arrays and objects).
    public static func render(_ value: JSONValue, scope: TemplateScope) throws(TemplateRenderError) -> JSONValue {
        var renderer = TemplateRenderer(scope: scope)
        return try renderer.render(value, depth: 0)
    }

    /// Renders a task's whole options object: each option may refer to the others through {{options.x}}.
    /// References see the unrendered options and are rendered on the way, so the order of keys does not matter.
    public static func renderOptions(
        _ options: [String: JSONValue], scope: TemplateScope
    ) throws(TemplateRenderError) -> [String: JSONValue] {
        var scope = scope
        scope.values["options"] = .object(options)
        var renderer = TemplateRenderer(scope: scope)
        var rendered: [String: JSONValue] = [:]
        rendered.reserveCapacity(options.count)
        // Sorted so that, when several options fail, the error reported is always the same one.
        for key in options.keys.sorted() {
            guard let value = options[key] else { continue }
            rendered[key] = try renderer.render(value, depth: 0)
        }
        return rendered
    }

    /// Whether a string contains a {{…}} placeholder.
    public static func containsTemplate(_ text: String) -> Bool {
        TemplateScanner.segments(of: text).contains { segment in
            if case .placeholder = segment { return true }
            return false
        }
    }
}

// MARK: - Rendering

private struct TemplateRenderer {
    let scope: TemplateScope
    var expansions = 0

    init(scope: TemplateScope) {
        self.scope = scope
    }

    mutating func render(_ value: JSONValue, depth: Int) throws(TemplateRenderError) -> JSONValue {
        switch value {
        case .string(let text):
            return try renderText(text, depth: depth)
        case .array(let items):
            var rendered: [JSONValue] = []
            rendered.reserveCapacity(items.count)
            for item in items { rendered.append(try render(item, depth: depth)) }
            return .array(rendered)
        case .object(let members):
            var rendered: [String: JSONValue] = [:]
            rendered.reserveCapacity(members.count)
            for key in members.keys.sorted() {
                guard let member = members[key] else { continue }
                rendered[key] = try render(member, depth: depth)
            }
            return .object(rendered)
        case .null, .bool, .number:
            return value
        }
    }

    private mutating func renderText(_ text: String, depth: Int) throws(TemplateRenderError) -> JSONValue {
        let segments = TemplateScanner.segments(of: text)
        if segments.count == 1 {
            switch segments[0] {
            case .text:
                return .string(text)
            case .placeholder(let tag):
                // A string that is exactly one placeholder takes the looked-up value's own type.
                return try resolve(tag, depth: depth)
            }
        }
        var result = ""
        for segment in segments {
            switch segment {
            case .text(let literal):
                result += literal
            case .placeholder(let tag):
                result += TemplateText.interpolated(try resolve(tag, depth: depth))
            }
        }
        return .string(result)
    }

    private mutating func resolve(_ tag: TemplateTag, depth: Int) throws(TemplateRenderError) -> JSONValue {
        var expression = tag.content.trimmingTemplateWhitespace()
        switch expression.first {
        case "!":
            return .string("")
        case "&":
            expression = String(expression.dropFirst()).trimmingTemplateWhitespace()
        case "#", "^", "/", ">", "<", "=":
            // Sections, partials and delimiter changes are outside the subset; rendering them as values would be wrong.
            throw TemplateRenderError(message: "Unsupported template tag \(tag.source)")
        default:
            break
        }
        return try resolveExpression(expression, depth: depth)
    }

    /// `a | b | literal`: the first item that yields a value wins.
    private mutating func resolveExpression(_ expression: String, depth: Int) throws(TemplateRenderError) -> JSONValue {
        expansions += 1
        if expansions > OptionTemplate.maximumExpansions {
            throw TemplateRenderError(
                message: "Template rendering exceeded \(OptionTemplate.maximumExpansions) placeholders: \(expression)")
        }
        for rawItem in expression.split(separator: "|", omittingEmptySubsequences: true) {
            let item = String(rawItem).trimmingTemplateWhitespace()
            guard !item.isEmpty else { continue }
            switch lookUp(item) {
            case .literal(let text):
                return .string(text)
            case .found(let value):
                return try renderAgainIfNeeded(value, expression: expression, depth: depth)
            case .missing:
                continue
            }
        }
        throw TemplateRenderError(message: "Value does not exist for \(expression)")
    }

    private mutating func renderAgainIfNeeded(_ value: JSONValue, expression: String, depth: Int) throws(TemplateRenderError) -> JSONValue {
        guard TemplateText.containsTemplate(in: value) else { return value }
        guard depth < OptionTemplate.maximumDepth else {
            throw TemplateRenderError(message: "Template rendering exceeded \(OptionTemplate.maximumDepth) levels: \(expression)")
        }
        return try render(value, depth: depth + 1)
    }

    private enum LookUpResult {
        case literal(String)
        case found(JSONValue)
        case missing
    }

    /// Items containing a dot are paths; the shorthands are top-level names; anything else is literal text.
    /// `null` counts as missing, as it did in RackHD (where it was falsy), so a fallback can replace it.
    private func lookUp(_ item: String) -> LookUpResult {
        if !item.contains(".") {
            guard TemplateScope.shorthandNames.contains(item) else { return .literal(item) }
            return found(scope.values[item])
        }
        let names = item.split(separator: ".", omittingEmptySubsequences: false)
        guard let root = names.first, !names.contains(where: \.isEmpty) else { return .missing }
        var current = scope.values[String(root)]
        for name in names.dropFirst() {
            switch current {
            case .object(let members):
                current = members[String(name)]
            case .array(let items):
                guard name.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), let index = Int(name),
                    items.indices.contains(index)
                else { return .missing }
                current = items[index]
            default:
                return .missing
            }
        }
        return found(current)
    }

    private func found(_ value: JSONValue?) -> LookUpResult {
        guard let value, value != .null else { return .missing }
        return .found(value)
    }
}

// MARK: - Text forms

enum TemplateText {
    static func containsTemplate(in value: JSONValue) -> Bool {
        switch value {
        case .string(let text): return OptionTemplate.containsTemplate(text)
        case .array(let items): return items.contains(where: containsTemplate(in:))
        case .object(let members): return members.values.contains(where: containsTemplate(in:))
        case .null, .bool, .number: return false
        }
    }

    /// The form a value takes inside text: strings as they are, whole numbers without a fraction,
    /// objects and arrays as compact JSON.
    static func interpolated(_ value: JSONValue) -> String {
        switch value {
        case .string(let text): return text
        case .number(let number): return numberText(number)
        case .bool(let flag): return flag ? "true" : "false"
        case .null: return "null"
        case .array, .object:
            var json = ""
            appendJSON(value, to: &json)
            return json
        }
    }

    static func numberText(_ number: Double) -> String {
        if let whole = Int64(exactly: number) { return String(whole) }
        if number.isNaN { return "NaN" }
        if number.isInfinite { return number < 0 ? "-Infinity" : "Infinity" }
        return "\(number)"
    }

    /// Compact JSON with sorted keys, so the same value always gives the same text.
    static func appendJSON(_ value: JSONValue, to json: inout String) {
        switch value {
        case .null:
            json += "null"
        case .bool(let flag):
            json += flag ? "true" : "false"
        case .number(let number):
            // JSON has no NaN or infinity; JSON.stringify writes null for them.
            json += number.isFinite ? numberText(number) : "null"
        case .string(let text):
            appendJSONString(text, to: &json)
        case .array(let items):
            json += "["
            for (index, item) in items.enumerated() {
                if index > 0 { json += "," }
                appendJSON(item, to: &json)
            }
            json += "]"
        case .object(let members):
            json += "{"
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { json += "," }
                appendJSONString(key, to: &json)
                json += ":"
                appendJSON(members[key] ?? .null, to: &json)
            }
            json += "}"
        }
    }

    private static func appendJSONString(_ text: String, to json: inout String) {
        json += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": json += "\\\""
            case "\\": json += "\\\\"
            case "\n": json += "\\n"
            case "\r": json += "\\r"
            case "\t": json += "\\t"
            case "\u{08}": json += "\\b"
            case "\u{0C}": json += "\\f"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                json += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                json.unicodeScalars.append(scalar)
            }
        }
        json += "\""
    }
}

// MARK: - Scanning

/// One `{{…}}` or `{{{…}}}` tag: what is between the braces, and the whole tag as written.
struct TemplateTag: Equatable {
    var content: String
    var source: String
}

enum TemplateSegment: Equatable {
    case text(String)
    case placeholder(TemplateTag)
}

/// Splits text into literal runs and tags. Works on UTF-8 bytes: braces are ASCII, so every cut falls on a
/// character boundary, and a combining mark after a brace cannot hide it.
enum TemplateScanner {
    private static let openBrace = UInt8(ascii: "{")
    private static let closeBrace = UInt8(ascii: "}")

    static func segments(of text: String) -> [TemplateSegment] {
        // Most option strings have no braces at all; skip copying their bytes.
        guard mayContainTag(text) else { return [.text(text)] }
        let bytes = Array(text.utf8)
        var segments: [TemplateSegment] = []
        var literalStart = 0
        while let tag = nextTag(in: bytes, from: literalStart) {
            if tag.whole.lowerBound > literalStart {
                segments.append(.text(string(bytes[literalStart..<tag.whole.lowerBound])))
            }
            segments.append(.placeholder(TemplateTag(content: string(bytes[tag.content]), source: string(bytes[tag.whole]))))
            literalStart = tag.whole.upperBound
        }
        if literalStart < bytes.count || segments.isEmpty {
            segments.append(.text(string(bytes[literalStart...])))
        }
        return segments
    }

    private static func mayContainTag(_ text: String) -> Bool {
        var previous: UInt8 = 0
        for byte in text.utf8 {
            if byte == openBrace && previous == openBrace { return true }
            previous = byte
        }
        return false
    }

    /// The next complete tag at or after `start`. An opening `{{` with no `}}` after it is not a tag; of several
    /// openings before one `}}`, the last one is used, so a stray `{{` earlier in the text stays literal.
    private static func nextTag(in bytes: [UInt8], from start: Int) -> (whole: Range<Int>, content: Range<Int>)? {
        guard let firstOpening = firstPair(of: openBrace, in: bytes, from: start),
            let closing = firstPair(of: closeBrace, in: bytes, from: firstOpening + 2)
        else { return nil }
        var opening = closing - 2
        while opening > firstOpening, !(bytes[opening] == openBrace && bytes[opening + 1] == openBrace) {
            opening -= 1
        }
        let isTriple = opening > start && bytes[opening - 1] == openBrace && closing + 2 < bytes.count && bytes[closing + 2] == closeBrace
        if isTriple {
            return (whole: (opening - 1)..<(closing + 3), content: (opening + 2)..<closing)
        }
        return (whole: opening..<(closing + 2), content: (opening + 2)..<closing)
    }

    private static func firstPair(of brace: UInt8, in bytes: [UInt8], from start: Int) -> Int? {
        var index = start
        while index + 1 < bytes.count {
            if bytes[index] == brace && bytes[index + 1] == brace { return index }
            index += 1
        }
        return nil
    }

    private static func string(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes, as: UTF8.self)
    }
}

extension String {
    fileprivate func trimmingTemplateWhitespace() -> String {
        guard let first = firstIndex(where: { !$0.isWhitespace }), let last = lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return String(self[first...last])
    }
}
