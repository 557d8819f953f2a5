import ArgumentParser
import BusCore
import Foundation

struct Listen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print messages matching a topic pattern until interrupted.",
        discussion: "One line per message: routing key, type, body. Patterns use * (one word) and # (any words).")

    @OptionGroup var bus: BusOptions

    @Argument(help: "Exchange (events, on.events, …)")
    var exchange: String

    @Argument(help: "Topic patterns, e.g. 'graph.#' 'dhcp.bind.success.*'")
    var patterns: [String] = ["#"]

    @Flag(help: "One JSON object per line instead")
    var json = false

    @Option(help: "Stop after this many messages")
    var count: Int?

    func run() async throws {
        bus.bootstrapLogging()
        let configuration = try bus.busConfiguration(connectionName: "rackbus-cli")
        let exchangeName = bus.exchangeName(exchange, configuration: configuration)
        try await MessageBus.withBus(configuration: configuration) { messageBus in
            let subscription = try await messageBus.subscribeRaw(toExchangeNamed: exchangeName, patterns: patterns)
            var seen = 0
            for await delivery in subscription {
                // Written straight through, so that piping into another tool shows messages at once.
                let line = json ? jsonLine(delivery) : "\(delivery.routingKey) \(delivery.type ?? "-") \(render(delivery.message))"
                FileHandle.standardOutput.write(Data((line + "\n").utf8))
                seen += 1
                if let count, seen >= count { break }
            }
        }
    }

    private func jsonLine(_ delivery: Delivery<[UInt8]>) -> String {
        let body =
            (try? JSONDecoder().decode(JSONValue.self, from: Data(delivery.message)))
            ?? .string(String(decoding: delivery.message, as: UTF8.self))
        var object: [String: JSONValue] = [
            "exchange": .string(delivery.exchange),
            "routingKey": .string(delivery.routingKey),
            "body": body,
        ]
        object["type"] = delivery.type.map(JSONValue.string) ?? .null
        object["correlationId"] = delivery.properties.correlationID.map(JSONValue.string)
        object["replyTo"] = delivery.properties.replyTo.map(JSONValue.string)
        object["timestamp"] = delivery.properties.timestamp.map { .number(Double($0)) }
        return render(Array((try? JSONEncoder().encode(JSONValue.object(object.compactMapValues { $0 }))) ?? Data()))
    }
}
