import BusCore
import Foundation
import NodeProtocol

/// Which SKU a node's catalogs match. Pure functions over values.
///
/// A rule's path starts with a catalog source and goes on through the catalog's data: objects by
/// key, arrays by decimal index (`smbios.memory.0.size`). Keys may hold spaces
/// (`dmi.Base Board Information.Manufacturer`) and dots: where a dotted run of words is itself a
/// key, it is tried before the shorter key.
public enum SKUMatcher {
    /// The SKU whose rules all hold for `catalogs`; when several do, the one with the most rules
    /// (the most specific), ties broken by name. A SKU without rules never matches.
    public static func bestMatch(_ skus: [SKUDefinition], catalogs: [Catalog]) -> SKUDefinition? {
        skus.filter { matches($0, catalogs: catalogs) }
            .min { left, right in
                left.rules.count != right.rules.count ? left.rules.count > right.rules.count : left.name < right.name
            }
    }

    /// Whether every rule of `sku` holds (false for a SKU without rules).
    public static func matches(_ sku: SKUDefinition, catalogs: [Catalog]) -> Bool {
        !sku.rules.isEmpty && sku.rules.allSatisfy { matches($0, catalogs: catalogs) }
    }

    /// Whether one rule holds. A path that leads nowhere never matches.
    ///
    /// - `equals` compares JSON values: the number `2` does not equal the string `"2"`.
    /// - `contains` and `matches` test the value as text: a string as itself, a number or a
    ///   boolean as its JSON text (`2`, `2.5`, `true`). Null, arrays and objects have no text and
    ///   never match them.
    /// - A `matches` pattern that does not compile never matches.
    public static func matches(_ rule: SKURule, catalogs: [Catalog]) -> Bool {
        guard let value = value(at: rule.path, in: catalogs) else { return false }
        if let expected = rule.equals { return value == expected }
        guard let text = text(of: value) else { return false }
        if let part = rule.contains { return text.contains(part) }
        if let pattern = rule.matches { return search(pattern, in: text) }
        return false
    }

    /// The value at `path`: its first word names the catalog source, the rest walks the data.
    public static func value(at path: String, in catalogs: [Catalog]) -> JSONValue? {
        let words = path.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        // Sources may hold dots too, so the catalogs are walked as one object keyed by source.
        let root = JSONValue.object(Dictionary(catalogs.map { ($0.source, $0.data) }, uniquingKeysWith: { _, last in last }))
        return walk(root, words[...])
    }

    /// A value as text for `contains` and `matches`, or nil for null, arrays and objects.
    public static func text(of value: JSONValue) -> String? {
        switch value {
        case .string(let text): return text
        case .bool(let flag): return flag ? "true" : "false"
        case .number(let number):
            // JSON's text for a whole number has no fraction, as JSONValue encodes it.
            if number.rounded() == number, abs(number) < 1e15 { return String(Int64(number)) }
            return "\(number)"
        case .null, .array, .object: return nil
        }
    }

    /// Whether `pattern` matches somewhere in `text`; false when it does not compile.
    public static func search(_ pattern: String, in text: String) -> Bool {
        guard let expression = try? NSRegularExpression(pattern: pattern) else { return false }
        return expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }

    private static func walk(_ value: JSONValue, _ words: ArraySlice<String>) -> JSONValue? {
        guard let first = words.first else { return value }
        switch value {
        case .object(let object):
            // The longest dotted run that is a key first, so `a.b` finds the key "a.b" before "a".
            for end in stride(from: words.endIndex, to: words.startIndex, by: -1) {
                let key = words[words.startIndex..<end].joined(separator: ".")
                if let child = object[key], let found = walk(child, words[end...]) { return found }
            }
            return nil
        case .array(let elements):
            guard first.allSatisfy(\.isASCII), first.allSatisfy(\.isNumber), let index = Int(first), elements.indices.contains(index)
            else { return nil }
            return walk(elements[index], words.dropFirst())
        case .null, .bool, .number, .string:
            return nil
        }
    }
}
