/// A message type that writes its JSON itself (``JSONWriter``) instead of through
/// `JSONEncoder`: the bodies sent for every task. ``WireFormat/encode(_:)`` takes this way
/// when it can; the type's `Encodable` conformance stays the reference, and the output must be
/// what it writes.
public protocol DirectJSONEncodable: Encodable {
    func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable)
}

/// A message type read from a parsed ``JSONValue`` instead of through `JSONDecoder`.
/// ``WireFormat/decode(_:from:using:)`` (and so every subscription) tries it first. Nil means
/// "not certainly one": the body then goes to `JSONDecoder`, which decides and explains, so this
/// initializer must never accept what the `Decodable` conformance refuses.
public protocol DirectJSONDecodable: Decodable {
    init?(json: JSONValue)
}

/// A ``DirectJSONDecodable`` read from a JSON object member by member: any ``JSONMembers/Mismatch``
/// declines the body.
public protocol DirectJSONObjectDecodable: DirectJSONDecodable {
    init(members: JSONMembers) throws(JSONMembers.Mismatch)
}

extension DirectJSONObjectDecodable {
    public init?(json: JSONValue) {
        guard let value = try? Self(members: JSONMembers(json)) else { return nil }
        self = value
    }
}

/// The members of a JSON object, read as a synthesized `Decodable` conformance reads them:
/// a required member must be there with the right kind; an optional one may be missing or
/// null. Any other shape throws ``Mismatch``, and the caller leaves the body to `JSONDecoder`.
public struct JSONMembers {
    public struct Mismatch: Error {
        public init() {}
    }

    public let members: [String: JSONValue]

    public init(_ value: JSONValue) throws(Mismatch) {
        guard case .object(let members) = value else { throw Mismatch() }
        self.members = members
    }

    public func string(_ key: String) throws(Mismatch) -> String {
        guard case .string(let value) = members[key] else { throw Mismatch() }
        return value
    }

    public func optionalString(_ key: String) throws(Mismatch) -> String? {
        switch members[key] {
        case nil, .null: return nil
        case .string(let value): return value
        default: throw Mismatch()
        }
    }

    public func int(_ key: String) throws(Mismatch) -> Int {
        guard case .number(let value) = members[key], let int = Int(exactly: value) else { throw Mismatch() }
        return int
    }

    public func object(_ key: String) throws(Mismatch) -> [String: JSONValue] {
        guard case .object(let value) = members[key] else { throw Mismatch() }
        return value
    }

    public func optionalObject(_ key: String) throws(Mismatch) -> [String: JSONValue]? {
        switch members[key] {
        case nil, .null: return nil
        case .object(let value): return value
        default: throw Mismatch()
        }
    }

    /// A `[String: String]`.
    public func strings(_ key: String) throws(Mismatch) -> [String: String] {
        var strings: [String: String] = [:]
        for (name, value) in try object(key) {
            guard case .string(let text) = value else { throw Mismatch() }
            strings[name] = text
        }
        return strings
    }

    /// A `[String]`.
    public func stringArray(_ key: String) throws(Mismatch) -> [String] {
        guard case .array(let elements) = members[key] else { throw Mismatch() }
        var strings: [String] = []
        strings.reserveCapacity(elements.count)
        for element in elements {
            guard case .string(let text) = element else { throw Mismatch() }
            strings.append(text)
        }
        return strings
    }

    public func raw<Value: RawRepresentable<String>>(_ key: String, as type: Value.Type = Value.self) throws(Mismatch) -> Value {
        guard let value = Value(rawValue: try string(key)) else { throw Mismatch() }
        return value
    }

    /// Whether `key` is there at all (any value, null too).
    public func contains(_ key: String) -> Bool { members[key] != nil }
}
