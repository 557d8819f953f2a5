import Foundation
import Logging

/// The eight levels of the AMQP conventions, which are also the routing keys on `on.logging`.
///
/// Cases are declared as the conventions list them, most severe first. `Comparable` follows
/// swift-log's direction: a more severe level is greater (`.silly < .debug < … < .emerg`).
public enum LogLevel: String, Codable, CaseIterable, Comparable, Sendable {
    case emerg
    case alert
    case error
    case warning
    case notice
    case info
    case debug
    case silly

    /// 0 for `silly` up to 7 for `emerg`.
    public var severity: Int {
        switch self {
        case .silly: 0
        case .debug: 1
        case .info: 2
        case .notice: 3
        case .warning: 4
        case .error: 5
        case .alert: 6
        case .emerg: 7
        }
    }

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool {
        lhs.severity < rhs.severity
    }

    /// swift-log's seven levels onto the conventions' eight. `critical` becomes `alert`, not
    /// `emerg`: syslog reserves `emerg` for "the system is unusable", which one service cannot
    /// claim about the whole installation, while `alert` means "act now" as `critical` does.
    public init(_ level: Logger.Level) {
        switch level {
        case .trace: self = .silly
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        case .critical: self = .alert
        }
    }

    /// The swift-log level for a record read from the bus; `emerg` and `alert` both become `critical`.
    public var swiftLogLevel: Logger.Level {
        switch self {
        case .emerg, .alert: .critical
        case .error: .error
        case .warning: .warning
        case .notice: .notice
        case .info: .info
        case .debug: .debug
        case .silly: .trace
        }
    }

    /// Besides the eight names, accepts `critical`, which RackHD's on-core publishes for its
    /// most severe level, so that RackHD's own records decode (as `alert`).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let name = try container.decode(String.self)
        if let level = LogLevel(rawValue: name) {
            self = level
        } else if name == "critical" {
            self = .alert
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "unknown log level '\(name)'")
        }
    }
}

/// RackHD's `LogEvent`: one log record as published on `on.logging` with the level as routing key.
public struct LogEvent: Codable, Sendable, Equatable, BusPayload {
    public static let payloadType = "LogEvent"
    /// The subject of records that concern no particular node, as in RackHD.
    public static let serverSubject = "Server"

    /// The service that logged (`on-dhcp`, `rackbus-scheduler`).
    public var name: String
    /// The short host name of the machine the service runs on.
    public var host: String
    /// The logger's label (RackHD: the module's injector token).
    public var module: String
    public var level: LogLevel
    public var message: String
    /// The record's metadata, redacted (see ``LogRedaction``), without the `id` that became ``subject``.
    public var context: [String: JSONValue]
    /// ISO-8601 in UTC with milliseconds: `2024-05-01T12:00:00.123Z`.
    public var timestamp: String
    /// `<file>:<line>` of the log statement.
    public var caller: String
    /// The node (or other entity) the record is about: the `id` metadata, else `nodeId` or `node`, else `Server`.
    public var subject: String

    public init(
        name: String, host: String, module: String, level: LogLevel, message: String, context: [String: JSONValue], timestamp: String,
        caller: String, subject: String
    ) {
        self.name = name
        self.host = host
        self.module = module
        self.level = level
        self.message = message
        self.context = context
        self.timestamp = timestamp
        self.caller = caller
        self.subject = subject
    }

    /// Builds the record RackHD would have published for a swift-log statement.
    ///
    /// Deviation from RackHD: only the top-level `id` leaves the context (it became the subject);
    /// RackHD also removed `mac` and `ip`, but they are what operators search a node's logs by.
    /// RackHD resolved the subject from `macaddress`/`ip` with a database lookup; the bus has no
    /// database, so callers name the node with `nodeId` (or `node`) metadata instead.
    public init(
        serviceName: String, host: String, label: String, level: Logger.Level, message: String, metadata: Logger.Metadata,
        date: Date, file: String, line: UInt
    ) {
        var context = metadata.mapValues(Self.jsonValue(of:))
        let subject: String
        if let id = Self.subjectText(metadata["id"]) {
            subject = id
            context["id"] = nil
        } else {
            // RackBus's services use the dotted `node.id` metadata key (and DHCPService `dhcp.mac`'s node).
            subject =
                Self.subjectText(metadata["nodeId"]) ?? Self.subjectText(metadata["node"]) ?? Self.subjectText(metadata["node.id"])
                ?? Self.serverSubject
        }
        self.init(
            name: serviceName, host: host, module: label, level: LogLevel(level), message: message,
            context: LogRedaction.redact(context), timestamp: Self.timestamp(for: date), caller: "\(file):\(line)", subject: subject)
    }

    /// Only a scalar names a subject; an empty string does not.
    private static func subjectText(_ value: Logger.MetadataValue?) -> String? {
        switch value {
        case .string(let text): text.isEmpty ? nil : text
        case .stringConvertible(let convertible): convertible.description.isEmpty ? nil : convertible.description
        case .dictionary, .array, nil: nil
        }
    }

    /// swift-log metadata as JSON. Numbers and booleans given as values (`"attempt": "\(n)"` is a
    /// string, `.stringConvertible(n)` is not) stay numbers and booleans; what JSON cannot carry
    /// exactly (NaN, integers beyond 2^53) becomes its description.
    public static func jsonValue(of value: Logger.MetadataValue) -> JSONValue {
        switch value {
        case .string(let text):
            return .string(text)
        case .dictionary(let dictionary):
            return .object(dictionary.mapValues(jsonValue(of:)))
        case .array(let array):
            return .array(array.map(jsonValue(of:)))
        case .stringConvertible(let convertible):
            switch convertible {
            case let flag as Bool:
                return .bool(flag)
            case let integer as any BinaryInteger:
                // Doubles hold integers exactly up to 2^53.
                if let small = Int(exactly: integer), small.magnitude <= 1 << 53 { return .number(Double(small)) }
                return .string(convertible.description)
            case let number as Double where number.isFinite:
                return .number(number)
            case let number as Float where number.isFinite:
                return .number(Double(number))
            default:
                return .string(convertible.description)
            }
        }
    }

    private static let secondsStyle = Date.ISO8601FormatStyle(timeZone: .gmt)

    /// `2024-05-01T12:00:00.123Z`, as JavaScript's `toISOString()` writes it: truncated to the
    /// millisecond, after rounding to the microsecond so that binary noise (`.123` stored as
    /// `.12299999`) does not lose a millisecond.
    public static func timestamp(for date: Date) -> String {
        let microseconds = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        let milliseconds = microseconds >= 0 ? microseconds / 1000 : (microseconds - 999) / 1000
        let seconds = milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000
        let fraction = Int(milliseconds - seconds * 1000)
        let whole = secondsStyle.format(Date(timeIntervalSince1970: Double(seconds)))
        let digits = String(fraction)
        return "\(whole.dropLast()).\(String(repeating: "0", count: 3 - digits.count))\(digits)Z"
    }

    /// `node1.example.com` → `node1`. An IP address is kept whole: its first octet names nothing.
    public static func shortHostName(_ hostName: String) -> String {
        let isAddress = hostName.contains(":") || hostName.allSatisfy { $0.isNumber || $0 == "." }
        guard !isAddress, let dot = hostName.firstIndex(of: "."), dot != hostName.startIndex else { return hostName }
        return String(hostName[..<dot])
    }

    /// This machine's short host name.
    public static var localHostName: String {
        shortHostName(ProcessInfo.processInfo.hostName)
    }
}

/// Hides secrets in log context before it leaves the process.
///
/// A key is sensitive when, ignoring case:
/// 1. it contains `password`, `passwd`, `passphrase`, `secret`, `token`, `credential`,
///    `authorization` or `community` anywhere (`oldPassword`, `x-auth-token`, `SNMPCommunity`,
///    `apitokens`); these never occur inside harmless words, and RackHD already matched `password` so; or
/// 2. one of its words is `key` or `keys`, or a one-word credential compound (`apikey`,
///    `productkey`, `privatekey`, `accesskey`, `authkey`, `sshkey`, `licensekey`). Words come from
///    splitting on every character that is not a letter or digit, on lower-to-upper case changes,
///    before the last capital of an acronym (`SNMPKey` → `snmp`, `key`) and between letters and
///    digits. So `apiKey`, `api_key`, `ssh.keys` and `key2` match, while `monkey` and `keyboard` do not.
///
/// Exception: `key` right after `routing` (`routingKey`, `amqp.routing_key`) names an AMQP
/// routing key, which the bus logs all the time and which is never a secret.
///
/// A sensitive key's whole value, whatever its type, becomes `"[REDACTED]"`; other values are
/// searched at any depth, inside arrays too.
public enum LogRedaction {
    public static let placeholder: JSONValue = "[REDACTED]"

    private static let sensitiveFragments = [
        "password", "passwd", "passphrase", "secret", "token", "credential", "authorization", "community",
    ]
    private static let sensitiveWords: Set<String> = [
        "key", "keys", "apikey", "productkey", "privatekey", "accesskey", "authkey", "sshkey", "licensekey",
    ]

    public static func redact(_ context: [String: JSONValue]) -> [String: JSONValue] {
        var redacted = context
        for (key, value) in context {
            redacted[key] = isSensitive(key: key) ? placeholder : redact(value)
        }
        return redacted
    }

    public static func redact(_ value: JSONValue) -> JSONValue {
        switch value {
        case .object(let object): .object(redact(object))
        case .array(let array): .array(array.map(redact))
        case .null, .bool, .number, .string: value
        }
    }

    public static func isSensitive(key: String) -> Bool {
        let lowercased = key.lowercased()
        if sensitiveFragments.contains(where: { lowercased.contains($0) }) { return true }
        let keyWords = words(of: key)
        for (index, word) in keyWords.enumerated() where sensitiveWords.contains(word) {
            let isRoutingKey = (word == "key" || word == "keys") && index > 0 && keyWords[index - 1] == "routing"
            if !isRoutingKey { return true }
        }
        return false
    }

    /// The lowercased words of an identifier: `SNMPCommunity` → `snmp`, `community`;
    /// `x-auth-token` → `x`, `auth`, `token`; `apiKey2` → `api`, `key`, `2`.
    public static func words(of key: String) -> [String] {
        let characters = Array(key)
        var words: [String] = []
        var current = ""
        var previous: CharacterKind?
        for (index, character) in characters.enumerated() {
            guard let kind = kind(of: character) else {
                if !current.isEmpty { words.append(current.lowercased()) }
                current = ""
                previous = nil
                continue
            }
            if let previous {
                let next = index + 1 < characters.count ? self.kind(of: characters[index + 1]) : nil
                let startsWord =
                    (previous == .lower && kind == .upper)  // apiKey
                    || (previous == .upper && kind == .upper && next == .lower)  // SNMPCommunity: the C starts a word
                    || ((previous == .digit) != (kind == .digit))  // key2, 2fa
                if startsWord {
                    words.append(current.lowercased())
                    current = ""
                }
            }
            current.append(character)
            previous = kind
        }
        if !current.isEmpty { words.append(current.lowercased()) }
        return words
    }

    private enum CharacterKind { case lower, upper, digit }

    private static func kind(of character: Character) -> CharacterKind? {
        if character.isNumber { return .digit }
        if character.isUppercase { return .upper }
        if character.isLetter { return .lower }
        return nil
    }
}
