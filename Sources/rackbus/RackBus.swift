import ArgumentParser
import BusCore
import Foundation
import Logging
import Synchronization

@main
struct RackBus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rackbus",
        abstract: "Talk to RackBus services over the AMQP message bus, or run them.",
        discussion: "The broker comes from --url or RACKBUS_AMQP_URL (default \(BusConfiguration.defaultURL)).",
        subcommands: [
            Up.self, Graph.self, Events.self, Logs.self, Config.self, Publish.self, Listen.self, Call.self, Exchanges.self, Services.self,
            Nodes.self, SKU.self, DeadLetters.self,
        ]
    )
}

/// Options every verb shares.
struct BusOptions: ParsableArguments {
    @Option(name: .long, help: "Broker URL (amqp:// or amqps://). Default: $RACKBUS_AMQP_URL, else \(BusConfiguration.defaultURL)")
    var url: String?

    @Option(name: .long, help: "Exchange name prefix. Default: $RACKBUS_EXCHANGE_PREFIX, else 'on'")
    var prefix: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (default: info for up, warning otherwise)")
    var logLevel: Logger.Level?

    func busConfiguration(connectionName: String) throws -> BusConfiguration {
        let environment = ProcessInfo.processInfo.environment
        var configuration = try BusConfiguration(url: url ?? environment[BusConfiguration.urlEnvironmentKey] ?? BusConfiguration.defaultURL)
        if let prefix = prefix ?? environment["RACKBUS_EXCHANGE_PREFIX"] {
            configuration.exchangePrefix = prefix
        }
        if let timeout = environment["RACKBUS_CALL_TIMEOUT_MS"].flatMap(Int.init), timeout > 0 {
            configuration.defaultCallTimeout = .milliseconds(timeout)
        }
        try configuration.applyQueueSettings(from: environment)
        configuration.connectionName = connectionName
        return configuration
    }

    func bootstrapLogging(default defaultLevel: Logger.Level = .warning, publisher: BusLogPublisher? = nil, serviceName: String = "rackbus")
    {
        LogLevelControl.shared.level = logLevel ?? defaultLevel
        LoggingSystem.bootstrap { label in
            let local = LiveLevelLogHandler(base: StreamLogHandler.standardError(label: label))
            guard let publisher else { return local }
            // Every record also goes to on.logging (routing key = level) for the EventsLogger.
            return MultiplexLogHandler([
                local, LiveLevelLogHandler(base: BusLogHandler(label: label, serviceName: serviceName, publisher: publisher)),
            ])
        }
    }

    /// `events` or `on.events` → `on.events`; anything else is taken as a literal exchange name
    /// (`""` is the default exchange).
    func exchangeName(_ text: String, configuration: BusConfiguration) -> String {
        if let exchange = Exchange.named(text, prefix: configuration.exchangePrefix) {
            return configuration.name(of: exchange)
        }
        return text
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// The process's log level, changeable while running (the configuration exchange's `logging.level`).
final class LogLevelControl: Sendable {
    static let shared = LogLevelControl()
    private let storage = Mutex<Logger.Level>(.info)

    var level: Logger.Level {
        get { storage.withLock { $0 } }
        set { storage.withLock { $0 = newValue } }
    }

    /// The conventions' eight levels onto swift-log's seven: emerg and alert are critical, silly is trace.
    static func level(conventionName name: String) -> Logger.Level? {
        switch name {
        case "emerg", "alert": return .critical
        case "error": return .error
        case "warning": return .warning
        case "notice": return .notice
        case "info": return .info
        case "debug": return .debug
        case "silly": return .trace
        default: return nil
        }
    }
}

/// A handler whose level follows ``LogLevelControl`` instead of being fixed at bootstrap.
struct LiveLevelLogHandler<Base: LogHandler>: LogHandler {
    var base: Base

    var logLevel: Logger.Level {
        get { LogLevelControl.shared.level }
        set { LogLevelControl.shared.level = newValue }
    }

    var metadata: Logger.Metadata {
        get { base.metadata }
        set { base.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { base[metadataKey: key] }
        set { base[metadataKey: key] = newValue }
    }

    func log(event: Logging.LogEvent) {
        base.log(event: event)
    }
}

/// Reads a JSON argument, refusing anything that is not JSON before it reaches the wire.
func jsonBody(_ text: String) throws -> [UInt8] {
    let bytes = Array(text.utf8)
    do {
        _ = try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
    } catch {
        throw ValidationError("not valid JSON: \(text)")
    }
    return bytes
}

/// Renders a body for people: compact JSON when it is JSON, else the text.
func render(_ body: [UInt8], pretty: Bool = false) -> String {
    if let value = try? JSONDecoder().decode(JSONValue.self, from: Data(body)) {
        let encoder = JSONEncoder()
        encoder.outputFormatting =
            pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        if let data = try? encoder.encode(value) {
            return String(decoding: data, as: UTF8.self)
        }
    }
    return String(decoding: body, as: UTF8.self)
}
