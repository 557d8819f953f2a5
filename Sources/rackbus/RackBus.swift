import ArgumentParser
import BusCore
import Foundation
import Logging

@main
struct RackBus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rackbus",
        abstract: "Talk to RackBus services over the AMQP message bus, or run them.",
        discussion: "The broker comes from --url or RACKBUS_AMQP_URL (default \(BusConfiguration.defaultURL)).",
        subcommands: [Up.self, Graph.self, Publish.self, Listen.self, Call.self, Exchanges.self]
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
        configuration.connectionName = connectionName
        return configuration
    }

    func bootstrapLogging(default defaultLevel: Logger.Level = .warning) {
        let level = logLevel ?? defaultLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
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
