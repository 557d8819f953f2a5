import ArgumentParser
import BusCore

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish a JSON message.",
        discussion: "Example: rackbus publish events graph.finished.g1 '{\"graphId\":\"g1\",\"status\":\"succeeded\"}'")

    @OptionGroup var bus: BusOptions

    @Argument(help: "Exchange: a convention name (events, dhcp, …), a full name (on.events), or any exchange")
    var exchange: String

    @Argument(help: "Routing key")
    var routingKey: String

    @Argument(help: "JSON body")
    var json: String

    @Option(help: "AMQP type property (RackHD's payload class: Object, Result, IpAddress, …)")
    var type: String = "Object"

    @Flag(help: "Wait for the broker's confirm, and fail if no queue receives the message")
    var confirm = false

    func run() async throws {
        bus.bootstrapLogging()
        let configuration = try bus.busConfiguration(connectionName: "rackbus-cli")
        let body = try jsonBody(json)
        let exchangeName = bus.exchangeName(exchange, configuration: configuration)
        try await MessageBus.withBus(configuration: configuration) { messageBus in
            try await messageBus.waitUntilConnected(timeout: .seconds(10))
            if confirm {
                try await messageBus.publishRawConfirmed(
                    body: body, toExchangeNamed: exchangeName, routingKey: routingKey, type: type, mandatory: true)
            } else {
                var properties = MessageProperties(contentType: jsonContentType, type: type)
                properties.deliveryMode = 1
                try await messageBus.publishRaw(body: body, toExchangeNamed: exchangeName, routingKey: routingKey, properties: properties)
            }
        }
    }
}
