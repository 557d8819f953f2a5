/// One of the nine exchanges of the AMQP conventions. The wire name is `<prefix>.<suffix>`
/// (`on.events` with RackHD's prefix `on`); every exchange is a durable, non-auto-delete topic
/// exchange, exactly as RackHD declares them, so that both sides can declare them in any order.
public struct Exchange: Hashable, Sendable, CustomStringConvertible {
    /// The part after the prefix: `events`, `task-graph-runner`, …
    public let suffix: String

    public init(suffix: String) {
        self.suffix = suffix
    }

    public static let configuration = Exchange(suffix: "configuration")
    public static let events = Exchange(suffix: "events")
    public static let http = Exchange(suffix: "http")
    public static let dhcp = Exchange(suffix: "dhcp")
    public static let tftp = Exchange(suffix: "tftp")
    public static let logging = Exchange(suffix: "logging")
    public static let taskGraphRunner = Exchange(suffix: "task-graph-runner")
    public static let scheduler = Exchange(suffix: "scheduler")
    public static let task = Exchange(suffix: "task")

    /// The nine exchanges of the conventions, in the order the conventions list them.
    public static let conventions: [Exchange] = [
        .configuration, .events, .http, .dhcp, .tftp, .logging, .taskGraphRunner, .scheduler, .task,
    ]

    /// The exchange's name on the broker for a given prefix.
    public func name(prefix: String) -> String {
        prefix.isEmpty ? suffix : "\(prefix).\(suffix)"
    }

    /// Finds a convention exchange by its suffix (`events`) or its full name (`on.events`).
    public static func named(_ text: String, prefix: String) -> Exchange? {
        conventions.first { $0.suffix == text || $0.name(prefix: prefix) == text }
    }

    public var description: String { suffix }

    /// The flags every convention exchange is declared with.
    public static let kind = "topic"
    public static let durable = true
    public static let autoDelete = false
}

/// The routing keys of the conventions, per exchange, as the conventions document writes them.
/// `[nodeid]`-style segments are placeholders for an id.
public enum RoutingKeyCatalogue {
    public static let keys: [Exchange: [String]] = [
        .configuration: ["methods.set", "methods.get"],
        .events: [
            "tftp.success.[nodeid]", "tftp.failure.[nodeid]", "http.response.[nodeid]",
            "dhcp.bind.success.[nodeid]", "task.finished.[taskid]", "graph.started.[graphid]",
            "graph.finished.[graphid]", "sku.assigned.[nodeid]",
        ],
        .http: ["http.response"],
        .dhcp: [
            "methods.lookupIpLease", "methods.ipInRange", "methods.peekLeaseTable", "methods.removeLease",
            "methods.removeLeaseByIp", "methods.pinMac", "methods.unpinMac", "methods.pinIp", "methods.unpinIp",
        ],
        .tftp: [],
        .logging: ["emerg", "alert", "error", "warning", "notice", "info", "debug", "silly"],
        .taskGraphRunner: [
            "methods.getTaskGraphLibrary", "methods.getTaskLibrary", "methods.getActiveTaskGraph",
            "methods.getActiveTaskGraphs", "methods.defineTaskGraph", "methods.defineTask",
            "methods.runTaskGraph", "methods.cancelTaskGraph", "methods.pauseTaskGraph",
            "methods.resumeTaskGraph", "methods.getTaskGraphProperties",
        ],
        .scheduler: ["schedule"],
        .task: [
            "run.[taskid]", "cancel.[taskid]", "methods.requestProfile.[nodeid]",
            "methods.requestProperties.[nodeid]", "methods.requestCommands.[nodeid]",
            "methods.respondCommands.[nodeid]", "methods.getBootProfile.[nodeid]",
            "methods.activeTaskExists.[nodeid]", "methods.requestPollerCache",
            "ipmi.command.[command].[graphid]", "ipmi.command.[command].result.[graphid]",
            "run.snmp.command.[graphid]", "snmp.command.result.[graphid]", "poller.alert.[graphid]",
        ],
    ]
}
