import GRDB

/// A database file holds a value its schema rules out: a NULL, or a value of another type,
/// written by hand, by another program or by a failing disk. Its description names the file.
public struct DamagedDatabaseError: Error, CustomStringConvertible {
    /// The database file (`:memory:` for an in-memory one).
    public let path: String
    public let column: String
    /// What the column holds instead, as SQLite shows it (`NULL`, `'text'`, …).
    public let found: String
    public let expected: String

    public var description: String {
        "The database \(path) is damaged: column \(column) holds \(found) (expected \(expected))."
    }
}

extension Row {
    /// The value of `column` as a `Value`, or a ``DamagedDatabaseError`` naming `path` when the
    /// column holds NULL (for a non-optional `Value`), a value of another type, or is missing.
    /// GRDB's `row["column"]` subscripts trap in those cases instead; a damaged file must not
    /// crash the service that opens it. Ask for an optional `Value` where NULL is allowed.
    public func decode<Value: DatabaseValueConvertible>(
        _ type: Value.Type = Value.self, _ column: String, in path: String
    ) throws(DamagedDatabaseError) -> Value {
        do {
            return try decode(type, forColumn: column)
        } catch {
            let found = (self[column] as DatabaseValue?).map { "\($0)" } ?? "nothing (no such column)"
            throw DamagedDatabaseError(path: path, column: column, found: String(found.prefix(80)), expected: "\(Value.self)")
        }
    }
}
