import ArgumentParser
import BusCore
import ConfigurationService
import DHCPService
import EventsLogger
import Foundation
import HTTPService
import Logging
import Metrics
import NodeRegistry
import Observability
import Prometheus
import Scheduler
import ServiceLifecycle
import TFTPService
import TaskGraphRunner

struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the RackBus services in one process until SIGTERM or Ctrl-C.",
        discussion: """
            Connects to the broker (waiting for it if it is not up yet), declares the nine exchanges and runs
            the TaskGraphRunner (with a task runner), the Scheduler, and DHCPService: the lease RPCs on on.dhcp
            always, and a DHCP server on UDP 67 when an interface is given
            (--dhcp-interface or RACKBUS_DHCP_INTERFACE). Every DHCP setting can also come from RACKBUS_DHCP_*
            variables (see the README).
            """)

    @OptionGroup var bus: BusOptions

    /// Every service `rackbus up` can run.
    static let allServices = ["configuration", "dhcp", "taskgraph", "scheduler", "eventslogger", "nodes", "tftp", "http"]

    @Option(help: "Which services to run: a comma-separated list of \(Up.allServices.joined(separator: ", ")) (default: all)")
    var services: String = Up.allServices.joined(separator: ",")

    @Option(help: "Node registry database file (default: $RACKBUS_NODES_DATABASE, else .rackbus/nodes.sqlite)")
    var nodesDatabase: String?

    @Option(help: "Folder TFTP serves files from (default: $RACKBUS_TFTP_ROOT, else .rackbus/tftp)")
    var tftpRoot: String?

    @Option(help: "TFTP address, IPV4:PORT (default: $RACKBUS_TFTP_LISTEN, else 0.0.0.0:69)")
    var tftpListen: String?

    @Option(help: "The HTTP boot service's address for nodes, HOST:PORT (default: $RACKBUS_HTTP_LISTEN, else 0.0.0.0:9080)")
    var httpListen: String?

    @Option(help: "The management API's address, HOST:PORT (default: $RACKBUS_HTTP_API_LISTEN, else 127.0.0.1:8080)")
    var httpApiListen: String?

    @Option(help: "Event journal file (default: $RACKBUS_EVENTS_DATABASE, else .rackbus/events.sqlite)")
    var eventsDatabase: String?

    @Option(help: "Also write every log record to this rotating file (default: $RACKBUS_EVENTS_LOG_FILE)")
    var eventsLogFile: String?

    @Option(help: "Lowest level the events logger prints, emerg…silly (default: $RACKBUS_EVENTS_LOG_LEVEL, else info)")
    var eventsLogLevel: String?

    @Option(help: "How the events logger prints records: readable or jsonLines (default: $RACKBUS_EVENTS_LOG_FORMAT, else readable)")
    var eventsLogFormat: String?

    @Option(
        help:
            "Configuration database file, for the configuration owner (default: $RACKBUS_CONFIGURATION_DATABASE, else .rackbus/configuration.sqlite)"
    )
    var configurationDatabase: String?

    @Option(help: "Serve DHCP on this interface (default: $RACKBUS_DHCP_INTERFACE; unset = lease RPCs only)")
    var dhcpInterface: String?

    @Option(help: "The server's address on that network (default: $RACKBUS_DHCP_SERVER_ADDRESS, else 172.31.128.1)")
    var dhcpServerAddress: String?

    @Option(help: "Address pool, FIRST-LAST (default: $RACKBUS_DHCP_POOL, else 172.31.128.10-172.31.131.250)")
    var dhcpPool: String?

    @Option(help: "Lease database file (default: $RACKBUS_DHCP_DATABASE, else .rackbus/dhcp.sqlite)")
    var dhcpDatabase: String?

    @Option(
        help:
            "Task graph store: a SQLite file, or a postgres:// URL shared by several instances (default: $RACKBUS_TASKGRAPH_DATABASE, else .rackbus/taskgraph.sqlite)"
    )
    var taskgraphDatabase: String?

    @Option(
        help:
            "Days the task runner remembers finished tasks, so that a redelivered run is not run again (default: $RACKBUS_TASKGRAPH_JOURNAL_DAYS, else 7)"
    )
    var taskgraphJournalDays: Int?

    @Option(help: "Tasks the Scheduler runs at once (default: $RACKBUS_SCHEDULER_CONCURRENCY, else 64)")
    var schedulerConcurrency: Int?

    @Option(
        help: "Serve Prometheus metrics (GET /metrics) on HOST:PORT (default: $RACKBUS_METRICS_LISTEN; unset = no endpoint)")
    var metricsListen: String?

    func run() async throws {
        let configuration = try bus.busConfiguration(connectionName: "rackbus-up")
        // Metrics first, so that every service's counters go to Prometheus from the start.
        var metricsEndpoint: MetricsEndpoint?
        if let listen = metricsListen ?? ProcessInfo.processInfo.environment["RACKBUS_METRICS_LISTEN"], !listen.isEmpty {
            let registry = PrometheusCollectorRegistry()
            do {
                metricsEndpoint = try MetricsEndpoint(listen: listen, registry: registry)
            } catch {
                throw ValidationError("metrics: \(error)")
            }
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        }
        let messageBus = MessageBus(configuration: configuration, logger: Logger(label: "rackbus.bus"))
        let logPublisher = BusLogPublisher(bus: messageBus)
        // RackHD named records after the service (`on-dhcp`); one process running everything is just `rackbus`.
        let serviceName = services.contains(",") ? "rackbus" : "rackbus-\(services)"
        bus.bootstrapLogging(default: .info, publisher: logPublisher, serviceName: serviceName)
        let logger = Logger(label: "rackbus.up")
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

        let taskgraphPath = taskgraphDatabase ?? environment["RACKBUS_TASKGRAPH_DATABASE"] ?? ".rackbus/taskgraph.sqlite"
        let journalText = environment["RACKBUS_TASKGRAPH_JOURNAL_DAYS"].flatMap { $0.isEmpty ? nil : $0 }
        let journalDays = taskgraphJournalDays ?? journalText.map { Int($0) ?? 0 } ?? 7
        guard (1...3_650).contains(journalDays) else { throw ValidationError("the task journal must keep 1 to 3650 days") }
        let concurrency = schedulerConcurrency ?? environment["RACKBUS_SCHEDULER_CONCURRENCY"].flatMap(Int.init) ?? 64
        guard concurrency > 0 else { throw ValidationError("the scheduler concurrency must be positive") }

        let eventsLevelName = eventsLogLevel ?? environment["RACKBUS_EVENTS_LOG_LEVEL"] ?? "info"
        guard let eventsLevel = LogSeverity(name: eventsLevelName) else {
            throw ValidationError(
                "unknown events log level \"\(eventsLevelName)\" (emerg, alert, error, warning, notice, info, debug, silly)")
        }
        let eventsFormatName = eventsLogFormat ?? environment["RACKBUS_EVENTS_LOG_FORMAT"] ?? "readable"
        guard let eventsFormat = LogLineFormat(rawValue: eventsFormatName) else {
            throw ValidationError("unknown events log format \"\(eventsFormatName)\" (readable, jsonLines)")
        }

        let selected = Set(services.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        let unknown = selected.subtracting(Up.allServices)
        guard unknown.isEmpty, !selected.isEmpty else {
            throw ValidationError("unknown services: \(unknown.sorted().joined(separator: ", "))")
        }

        let dhcp =
            selected.contains("dhcp")
            ? DHCPService(bus: messageBus, configuration: dhcpConfiguration, logger: Logger(label: "rackbus.dhcp")) : nil
        let taskGraphRunner =
            selected.contains("taskgraph")
            ? TaskGraphRunnerService(
                bus: messageBus,
                configuration: .init(database: taskgraphPath, finishedTaskRetention: .seconds(journalDays * 86_400)),
                logger: Logger(label: "rackbus.taskgraph"))
            : nil
        let scheduler =
            selected.contains("scheduler")
            ? SchedulerService(bus: messageBus, concurrency: concurrency, logger: Logger(label: "rackbus.scheduler")) : nil
        let configurationOwner =
            selected.contains("configuration")
            ? ConfigurationService(
                bus: messageBus,
                databasePath: configurationDatabase ?? environment["RACKBUS_CONFIGURATION_DATABASE"] ?? ".rackbus/configuration.sqlite",
                logger: Logger(label: "rackbus.configuration"))
            : nil
        let eventsLogger =
            selected.contains("eventslogger")
            ? EventsLoggerService(
                bus: messageBus,
                configuration: EventsLoggerConfiguration(
                    journalPath: eventsDatabase ?? environment["RACKBUS_EVENTS_DATABASE"] ?? ".rackbus/events.sqlite",
                    minimumOutputLevel: eventsLevel,
                    // Alone in its process it prints every service's records; beside the others the
                    // local handler already prints them.
                    writesToStandardOutput: selected == ["eventslogger"],
                    logFile: (eventsLogFile ?? environment["RACKBUS_EVENTS_LOG_FILE"]).map { LogFileOptions(path: $0) },
                    lineFormat: eventsFormat),
                logger: Logger(label: "rackbus.events-logger"))
            : nil
        environment[NodeRegistryConfiguration.Key.database] = nodesDatabase ?? environment[NodeRegistryConfiguration.Key.database]
        let nodeRegistry =
            selected.contains("nodes")
            ? NodeRegistryService(
                bus: messageBus, configuration: .fromEnvironment(environment), logger: Logger(label: "rackbus.nodes"))
            : nil
        environment[TFTPConfiguration.Key.root] = tftpRoot ?? environment[TFTPConfiguration.Key.root]
        environment[TFTPConfiguration.Key.listen] = tftpListen ?? environment[TFTPConfiguration.Key.listen]
        environment[HTTPConfiguration.Key.listen] = httpListen ?? environment[HTTPConfiguration.Key.listen]
        environment[HTTPConfiguration.Key.apiListen] = httpApiListen ?? environment[HTTPConfiguration.Key.apiListen]
        let tftp: TFTPService?
        do {
            tftp =
                selected.contains("tftp")
                ? TFTPService(bus: messageBus, configuration: try .fromEnvironment(environment), logger: Logger(label: "rackbus.tftp"))
                : nil
        } catch {
            throw ValidationError("TFTP configuration: \(error)")
        }
        let http: HTTPService?
        do {
            http =
                selected.contains("http")
                ? HTTPService(bus: messageBus, configuration: try .fromEnvironment(environment), logger: Logger(label: "rackbus.http"))
                : nil
        } catch {
            throw ValidationError("HTTP configuration: \(error)")
        }
        var readinessChecks: [@Sendable () async -> Void] = []
        if let dhcp { readinessChecks.append { await dhcp.waitUntilReady() } }
        if let taskGraphRunner { readinessChecks.append { await taskGraphRunner.waitUntilReady() } }
        if let nodeRegistry { readinessChecks.append { await nodeRegistry.waitUntilReady() } }
        if let tftp { readinessChecks.append { await tftp.waitUntilReady() } }
        if let http { readinessChecks.append { await http.waitUntilReady() } }
        let readiness = Readiness(bus: messageBus, services: readinessChecks, logger: logger)
        // The bus comes first, so it shuts down last; the log publisher right after, so that it
        // still carries the others' last records.
        var members: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: messageBus), .init(service: logPublisher)]
        // Presence: each service announces itself; listed after the bus so that it says goodbye
        // once the services have stopped, while the bus still runs.
        for service in selected.sorted() {
            members.append(.init(service: PresenceAnnouncer(bus: messageBus, service: service, logger: Logger(label: "rackbus.presence"))))
        }
        if let eventsLogger { members.append(.init(service: eventsLogger)) }
        if let configurationOwner { members.append(.init(service: configurationOwner)) }
        if let nodeRegistry { members.append(.init(service: nodeRegistry)) }
        if let dhcp { members.append(.init(service: dhcp)) }
        if let tftp { members.append(.init(service: tftp)) }
        if let http { members.append(.init(service: http)) }
        if let scheduler { members.append(.init(service: scheduler)) }
        if let taskGraphRunner { members.append(.init(service: taskGraphRunner)) }
        // Settings every process applies live: its log level, and what concerns the services it runs.
        members.append(
            .init(
                service: ConfigurationWatcher(bus: messageBus, key: ConfigurationKeys.logLevel) { value in
                    if let level = value.stringValue.flatMap(LogLevelControl.level(conventionName:)) {
                        LogLevelControl.shared.level = level
                    }
                }))
        if let scheduler {
            members.append(
                .init(
                    service: ConfigurationWatcher(bus: messageBus, key: ConfigurationKeys.schedulerConcurrency) { value in
                        if case .number(let number) = value { scheduler.concurrency = Int(number) }
                    }))
        }
        if let dhcp {
            // The owner of dhcp.pool: only it knows its subnet, so it checks a change before it is stored.
            members.append(
                .init(
                    service: ConfigurationValidator(bus: messageBus, owner: "dhcp") { key, value in
                        guard key == ConfigurationKeys.dhcpPool else { return }
                        guard let range = value.stringValue else { throw ErrorEvent.badRequest("\(key) must be a string FIRST-LAST.") }
                        do { _ = try dhcp.checkPool(range) } catch {
                            throw ErrorEvent.badRequest("\(key): \(error).", context: ["key": .string(key)])
                        }
                    }))
            members.append(
                .init(
                    service: ConfigurationWatcher(bus: messageBus, key: ConfigurationKeys.dhcpPool) { value in
                        guard let range = value.stringValue else { return }
                        do { try await dhcp.updatePool(range) } catch {
                            logger.error("could not apply dhcp.pool", metadata: ["error": "\(error)"])
                        }
                    }))
        }
        if let metricsEndpoint { members.append(.init(service: metricsEndpoint)) }
        members.append(.init(service: readiness))
        let group = ServiceGroup(
            configuration: .init(
                services: members,
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
    /// Each returns once its service serves.
    let services: [@Sendable () async -> Void]
    let logger: Logger

    func run() async throws {
        try await bus.waitUntilConnected(timeout: .seconds(365 * 24 * 3600))
        for waitUntilReady in services { await waitUntilReady() }
        logger.notice(
            "ready: connected to the broker, exchanges declared, services serving",
            metadata: ["exchanges": "\(Exchange.conventions.map { bus.name(of: $0) }.joined(separator: ", "))"])
        try? await gracefulShutdown()
    }
}
