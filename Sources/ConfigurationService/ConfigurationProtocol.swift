import BusCore
import Foundation

// The configuration exchange: `methods.set` and `methods.get` on `on.configuration`, answered by
// the one ConfigurationService that owns the store, and `configuration.changed.<key>` broadcast
// on the same exchange after every change, so that services apply settings live.

/// One setting.
public struct ConfigurationEntry: Codable, Sendable, Equatable {
    public var key: String
    public var value: JSONValue
    /// Increases by one with every change of this key.
    public var version: Int
    /// Epoch milliseconds of the last change.
    public var updatedAt: Int64

    public init(key: String, value: JSONValue, version: Int, updatedAt: Int64) {
        self.key = key
        self.value = value
        self.version = version
        self.updatedAt = updatedAt
    }

    public static func changedKey(_ key: String) -> String { "configuration.changed.\(key)" }
}

/// `methods.set`: `{"value": {"key": "scheduler.concurrency", "value": 16}}` (RackHD's `Result`
/// shape); replies with the stored entry, or a 400 ErrorEvent for an invalid key or value.
public struct SetConfiguration: BusRequest {
    public struct Change: Codable, Sendable, Equatable {
        public var key: String
        public var value: JSONValue
    }

    public typealias Reply = ConfigurationEntry
    public static let exchange = Exchange.configuration
    public static let method = "methods.set"
    public static let payloadType = "Result"
    public var value: Change

    public init(key: String, value: JSONValue) {
        self.value = Change(key: key, value: value)
    }
}

/// `methods.get`: `{"value": {"key": "…"}}` for one setting, `{}` (or no key) for all of them.
/// Replies with the entries by key; an unknown key gives an empty object.
public struct GetConfiguration: BusRequest {
    public struct Query: Codable, Sendable, Equatable {
        public var key: String?
    }

    public typealias Reply = [String: ConfigurationEntry]
    public static let exchange = Exchange.configuration
    public static let method = "methods.get"
    public static let payloadType = "Result"
    public var value: Query?

    public init(key: String? = nil) {
        value = key.map { Query(key: $0) }
    }
}

/// `methods.validate.<owner>`: before it stores a change of a setting that a service owns (see
/// ``ConfigurationKeys/owner(of:)``), the ConfigurationService asks that service whether it can
/// apply the value. The owner answers `true`, or a 400 ErrorEvent saying what is wrong; a
/// ``ConfigurationValidator`` serves it.
public struct ValidateConfiguration: BusRequest {
    public typealias Reply = Bool
    public static let exchange = Exchange.configuration
    public static let method = "methods.validate"
    public static let payloadType = "Result"
    public var value: SetConfiguration.Change

    public init(key: String, value: JSONValue) {
        self.value = SetConfiguration.Change(key: key, value: value)
    }

    public var routingKey: String { Self.routingKey(owner: ConfigurationKeys.owner(of: value.key) ?? "none") }

    public static func routingKey(owner: String) -> String { "\(method).\(owner)" }
}

/// The settings RackBus's services apply live, and what a valid value is. Other keys are
/// stored as given (for tools and later services) if the key itself is well formed.
public enum ConfigurationKeys {
    /// The minimum level services log at: one of the eight levels of the conventions.
    public static let logLevel = "logging.level"
    /// How many tasks the Scheduler runs at once: 1…10,000.
    public static let schedulerConcurrency = "scheduler.concurrency"
    /// The DHCP pool, `FIRST-LAST` (e.g. `172.31.128.10-172.31.131.250`), inside the server's subnet.
    public static let dhcpPool = "dhcp.pool"

    public static let logLevels = ["emerg", "alert", "error", "warning", "notice", "info", "debug", "silly"]

    /// The service that must accept a change of `key` before it is stored, for settings whose
    /// validity only that service knows (`dhcp.pool` must lie in the DHCP server's subnet).
    public static func owner(of key: String) -> String? {
        key == dhcpPool ? "dhcp" : nil
    }

    /// Checks a change's form; the error says what is wrong, for a 400 reply. A setting with an
    /// ``owner(of:)`` is then checked by its owner too.
    public static func validate(key: String, value: JSONValue) throws(ErrorEvent) {
        guard Self.isWellFormed(key) else {
            throw .badRequest("Invalid configuration key '\(key)': use lowercase words separated by dots, such as scheduler.concurrency.")
        }
        switch key {
        case logLevel:
            guard let level = value.stringValue, logLevels.contains(level) else {
                throw .badRequest("\(logLevel) must be one of \(logLevels.joined(separator: ", ")).")
            }
        case schedulerConcurrency:
            guard case .number(let number) = value, number.rounded() == number, (1...10_000).contains(number) else {
                throw .badRequest("\(schedulerConcurrency) must be a whole number from 1 to 10000.")
            }
        case dhcpPool:
            guard let text = value.stringValue, Self.poolRange(text) != nil else {
                throw .badRequest("\(dhcpPool) must look like 172.31.128.10-172.31.131.250, first address not after the last.")
            }
        default:
            break
        }
    }

    static func isWellFormed(_ key: String) -> Bool {
        let words = key.split(separator: ".", omittingEmptySubsequences: false)
        guard key.count <= 128, words.count >= 2 else { return false }
        return words.allSatisfy { word in
            !word.isEmpty && word.first!.isLetter
                && word.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "-" || $0 == "_" || ($0.isLetter && $0.isASCII) }
        }
    }

    /// `first-last` as two addresses in host order, first ≤ last.
    public static func poolRange(_ text: String) -> (first: UInt32, last: UInt32)? {
        let parts = text.split(separator: "-").map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 2, let first = ipv4(parts[0]), let last = ipv4(parts[1]), first <= last else { return nil }
        return (first, last)
    }

    private static func ipv4(_ text: String) -> UInt32? {
        let octets = text.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var value: UInt32 = 0
        for octet in octets {
            guard !octet.isEmpty, octet.count <= 3, octet.allSatisfy(\.isNumber), let number = UInt32(octet), number <= 255 else {
                return nil
            }
            value = value << 8 | number
        }
        return value
    }
}
