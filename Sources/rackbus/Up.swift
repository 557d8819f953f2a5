import ArgumentParser
import BusCore
import DHCPService
import Foundation
import Logging
import ServiceLifecycle

struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the RackBus services in one process until SIGTERM or Ctrl-C.",
        discussion: """
            Connects to the broker (waiting for it if it is not up yet), declares the nine exchanges and runs
            DHCPService: the lease RPCs on on.dhcp always, and a DHCP server on UDP 67 when an interface is given
            (--dhcp-interface or RACKBUS_DHCP_INTERFACE). Every DHCP setting can also come from RACKBUS_DHCP_*
            variables (see the README).
            """)

    @OptionGroup var bus: BusOptions

    @Option(help: "Serve DHCP on this interface (default: $RACKBUS_DHCP_INTERFACE; unset = lease RPCs only)")
    var dhcpInterface: String?

    @Option(help: "The server's address on that network (default: $RACKBUS_DHCP_SERVER_ADDRESS, else 172.31.128.1)")
    var dhcpServerAddress: String?

    @Option(help: "Address pool, FIRST-LAST (default: $RACKBUS_DHCP_POOL, else 172.31.128.10-172.31.131.250)")
    var dhcpPool: String?

    @Option(help: "Lease database file (default: $RACKBUS_DHCP_DATABASE, else .rackbus/dhcp.sqlite)")
    var dhcpDatabase: String?

    func run() async throws {
        bus.bootstrapLogging(default: .info)
        let logger = Logger(label: "rackbus.up")
        let configuration = try bus.busConfiguration(connectionName: "rackbus-up")
        var environment = ProcessInfo.processInfo.environment
        // Command-line options win over the environment.
        environment[DHCPConfiguration.Key.interface] = dhcpInterface ?? environment[DHCPConfiguration.Key.interface]
        environment[DHCPConfiguration.Key.serverAddress] = dhcpServerAddress ?? environment[DHCPConfiguration.Key.serverAddress]
        environment[DHCPConfiguration.Key.pool] = dhcpPool ?? environment[DHCPConfiguration.Key.pool]
        environment[DHCPConfiguration.Key.database] = dhcpDatabase ?? environment[DHCPConfiguration.Key.database]
        let dhcpConfiguration: DHCPConfiguration
        do {
            dhcpConfiguration = try DHCPConfiguration.fromEnvironment(environment)
        } catch {
            throw ValidationError("DHCP configuration: \(error)")
        }

        let messageBus = MessageBus(configuration: configuration, logger: Logger(label: "rackbus.bus"))
        let dhcp = DHCPService(bus: messageBus, configuration: dhcpConfiguration, logger: Logger(label: "rackbus.dhcp"))
        let readiness = Readiness(bus: messageBus, dhcp: dhcp, logger: logger)
        // The bus comes first, so it shuts down last.
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: messageBus), .init(service: dhcp), .init(service: readiness)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            ))
        logger.notice("starting", metadata: ["amqp.url": "\(configuration.redactedURL)", "bus.prefix": "\(configuration.exchangePrefix)"])
        try await group.run()
        logger.notice("stopped")
    }
}

/// Reports when everything is connected and serving, then waits for shutdown.
struct Readiness: Service {
    let bus: MessageBus
    let dhcp: DHCPService
    let logger: Logger

    func run() async throws {
        try await bus.waitUntilConnected(timeout: .seconds(365 * 24 * 3600))
        await dhcp.waitUntilReady()
        logger.notice(
            "ready: connected to the broker, exchanges declared, services serving",
            metadata: ["exchanges": "\(Exchange.conventions.map { bus.name(of: $0) }.joined(separator: ", "))"])
        try? await gracefulShutdown()
    }
}
