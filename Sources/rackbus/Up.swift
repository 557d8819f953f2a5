import ArgumentParser
import BusCore
import Logging
import ServiceLifecycle

struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the RackBus services in one process until SIGTERM or Ctrl-C.",
        discussion: "Connects to the broker (waiting for it if it is not up yet) and declares the nine exchanges.")

    @OptionGroup var bus: BusOptions

    func run() async throws {
        bus.bootstrapLogging(default: .info)
        let logger = Logger(label: "rackbus.up")
        let configuration = try bus.busConfiguration(connectionName: "rackbus-up")
        let messageBus = MessageBus(configuration: configuration, logger: Logger(label: "rackbus.bus"))
        let readiness = Readiness(bus: messageBus, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: messageBus),
                    .init(service: readiness),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            ))
        logger.notice("starting", metadata: ["amqp.url": "\(configuration.redactedURL)", "bus.prefix": "\(configuration.exchangePrefix)"])
        try await group.run()
        logger.notice("stopped")
    }
}

/// Reports when the bus is connected and its topology declared, then waits for shutdown.
struct Readiness: Service {
    let bus: MessageBus
    let logger: Logger

    func run() async throws {
        try await bus.waitUntilConnected(timeout: .seconds(365 * 24 * 3600))
        logger.notice(
            "ready: connected to the broker, exchanges declared",
            metadata: [
                "exchanges": "\(Exchange.conventions.map { bus.name(of: $0) }.joined(separator: ", "))"
            ])
        try? await gracefulShutdown()
    }
}
