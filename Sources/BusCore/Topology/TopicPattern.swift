/// AMQP topic matching (`*` is one word, `#` is zero or more words), the same rule the broker
/// applies to bindings. BusCore uses it to check routing keys locally and to document routing.
public struct TopicPattern: Hashable, Sendable, CustomStringConvertible {
    public let pattern: String
    private let words: [Substring]

    public init(_ pattern: String) {
        self.pattern = pattern
        self.words = pattern.split(separator: ".", omittingEmptySubsequences: false)
    }

    public var description: String { pattern }

    public func matches(_ routingKey: String) -> Bool {
        let key = routingKey.split(separator: ".", omittingEmptySubsequences: false)
        return Self.match(words[...], key[...])
    }

    private static func match(_ pattern: ArraySlice<Substring>, _ key: ArraySlice<Substring>) -> Bool {
        guard let head = pattern.first else { return key.isEmpty }
        switch head {
        case "#":
            let rest = pattern.dropFirst()
            // `#` swallows zero or more words: try every split point.
            var index = key.startIndex
            while true {
                if match(rest, key[index...]) { return true }
                if index == key.endIndex { return false }
                index += 1
            }
        case "*":
            guard !key.isEmpty else { return false }
            return match(pattern.dropFirst(), key.dropFirst())
        default:
            guard let word = key.first, word == head else { return false }
            return match(pattern.dropFirst(), key.dropFirst())
        }
    }
}
