import ArgumentParser
import BusCore
import Dispatch
import Foundation
import Logging

@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rackbus-bench",
        abstract: "Measure BusCore against the broker in RACKBUS_AMQP_URL. Prints one JSON line per case.",
        subcommands: [
            RPCBench.self, PublishBench.self, FanoutBench.self, LeaseRPCBench.self, DHCPExchangeBench.self, GraphBench.self, TFTPBench.self,
            HTTPBench.self,
        ]
    )
}

struct EchoCall: BusRequest {
    typealias Reply = EchoCall
    static let exchange = Exchange.task
    static let method = "methods.benchEcho"
    var sequence: Int
    var payload: String
}

struct Stamped: Codable, Sendable {
    var sequence: Int
    /// Monotonic nanoseconds at publish time (same clock in every process on the machine).
    var sentAt: UInt64
}

struct Figures {
    var caseName: String
    var count: Int
    var elapsed: Duration
    var latencies: [Duration]
    var extra: [String: String] = [:]
    /// This process's CPU seconds (``CPUTime/ownSeconds``) when the measured part began: the
    /// line then shows CPU per message next to the rate, since on a small machine the client's
    /// CPU is taken from the broker.
    var cpuAtStart: Double? = nil

    func printLine() {
        let sorted = latencies.sorted()
        func percentile(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let index = min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)
            return milliseconds(sorted[max(0, index)])
        }
        let seconds = milliseconds(elapsed) / 1000
        var fields: [(String, String)] = [
            ("case", "\"\(caseName)\""),
            ("rate_per_s", String(format: "%.0f", Double(count) / seconds)),
            ("p50_ms", String(format: "%.3f", percentile(0.50))),
            ("p99_ms", String(format: "%.3f", percentile(0.99))),
            ("peak_rss_mb", String(format: "%.1f", peakResidentMegabytes())),
        ]
        if let cpuAtStart, count > 0 {
            fields.append(("process_cpu_us_per_msg", String(format: "%.1f", (CPUTime.ownSeconds - cpuAtStart) * 1e6 / Double(count))))
        }
        for (key, value) in extra.sorted(by: { $0.key < $1.key }) { fields.append((key, value)) }
        print("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
    }
}

/// Runs `total` calls with `concurrency` in flight and returns each call's latency. With
/// `executor`, the callers run there (a bus's I/O thread).
func measureCalls(
    total: Int, concurrency: Int, on executor: (any TaskExecutor)? = nil, _ call: @escaping @Sendable (Int) async throws -> Void
) async throws -> [Duration] {
    try await withThrowingTaskGroup(of: [Duration].self) { workers in
        for worker in 0..<concurrency {
            workers.addTask(executorPreference: executor) {
                var mine: [Duration] = []
                var sequence = worker
                while sequence < total {
                    let begin = ContinuousClock.now
                    try await call(sequence)
                    mine.append(ContinuousClock.now - begin)
                    sequence += concurrency
                }
                return mine
            }
        }
        var all: [Duration] = []
        for try await part in workers { all += part }
        return all
    }
}

func milliseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
}

/// VmHWM: the process's peak resident set.
func peakResidentMegabytes() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kilobytes = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
        return kilobytes / 1024
    }
    return 0
}

func benchConfiguration(_ name: String) throws -> BusConfiguration {
    var configuration = try BusConfiguration.fromEnvironment()
    // A prefix of its own, so a benchmark never mixes with a running system.
    configuration.exchangePrefix = "bench\(UInt32.random(in: 0...UInt32.max))"
    configuration.connectionName = name
    return configuration
}

var benchLogger: Logger {
    var logger = Logger(label: "rackbus.bench")
    logger.logLevel = .warning
    return logger
}

func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// Reads `sentAt` out of a `Stamped` body without a JSON decoder (raw mode measures the bus alone).
/// The bench writes `sentAt` last, so its digits end the body just before the closing brace.
func sentAt(in body: [UInt8]) -> UInt64 {
    guard let colon = body.lastIndex(of: UInt8(ascii: ":")) else { return now() }
    var value: UInt64 = 0
    for byte in body[(colon + 1)...] {
        guard byte >= 48, byte <= 57 else { break }
        value = value * 10 + UInt64(byte - 48)
    }
    return value
}

struct RPCBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rpc", abstract: "Echo RPC: server and client in one process.")

    @Option(help: "Total calls") var calls = 20_000
    @Option(help: "Calls in flight") var concurrency = 32
    @Option(help: "Payload bytes") var payload = 16
    @Flag(help: "Serve and call on one connection instead of two") var oneConnection = false
    @Flag(help: "Bytes in, bytes out (callRaw and rawServer): the bus without JSON coding") var raw = false
    @Flag(help: "Callers run on the cooperative pool instead of the client bus's I/O thread") var callersOnPool = false

    func run() async throws {
        let configuration = try benchConfiguration("rackbus-bench-rpc")
        let text = String(repeating: "x", count: payload)
        let total = calls
        let inFlight = concurrency
        let shared = oneConnection
        let onPool = callersOnPool
        try await MessageBus.withBus(configuration: configuration, logger: benchLogger) { server in
            try await MessageBus.withBus(configuration: configuration, logger: benchLogger) { separateClient in
                let client = shared ? server : separateClient
                try await server.waitUntilConnected()
                try await client.waitUntilConnected()
                let rawMode = raw
                let echo =
                    rawMode
                    ? try await server.rawServer(
                        exchangeNamed: server.name(of: EchoCall.exchange), routingKey: EchoCall.method, concurrency: 256
                    ) {
                        body, _ in ServedReply(body: body)
                    }
                    : try await server.server(for: EchoCall.self, concurrency: 256) { request, _ in request }
                let rawBody = try WireFormat.encode(EchoCall(sequence: 0, payload: text))
                let exchange = client.name(of: EchoCall.exchange)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { await echo.run() }
                    let call: @Sendable (Int) async throws -> Void = { sequence in
                        if rawMode {
                            let reply = try await client.callRaw(exchangeNamed: exchange, routingKey: EchoCall.method, body: rawBody)
                            precondition(reply.body == rawBody, "wrong reply")
                        } else {
                            let reply = try await client.call(EchoCall(sequence: sequence, payload: text))
                            precondition(reply.sequence == sequence, "wrong reply")
                        }
                    }
                    // Warm up connections, caches and broker queues.
                    for sequence in 0..<200 { try await call(sequence) }
                    let cpuAtStart = CPUTime.ownSeconds
                    let started = ContinuousClock.now
                    let latencies = try await measureCalls(
                        total: total, concurrency: inFlight, on: onPool ? nil : client.ioThreadExecutor, call)
                    let elapsed = ContinuousClock.now - started
                    Figures(
                        caseName: rawMode ? "rpc-raw" : "rpc", count: total, elapsed: elapsed, latencies: latencies,
                        extra: [
                            "concurrency": "\(inFlight)", "calls": "\(total)", "connections": shared ? "1" : "2",
                            "callers": onPool ? "\"pool\"" : "\"io-thread\"",
                        ],
                        cpuAtStart: cpuAtStart
                    )
                    .printLine()
                    echo.cancel()
                    group.cancelAll()
                }
            }
        }
    }
}

/// Publishes `messages` stamped messages and measures until `subscribers` buses received them all.
/// With `onIOThread`, each subscriber reads its deliveries on its bus's I/O thread.
func publishAndReceive(
    caseName: String, messages: Int, subscribers: Int, raw: Bool, broadcastWindow: Int?, onIOThread: Bool
) async throws {
    var settings = try benchConfiguration("rackbus-bench-\(caseName)")
    if let broadcastWindow { settings.broadcastWindow = broadcastWindow }
    let configuration = settings
    try await MessageBus.withBus(configuration: configuration, logger: benchLogger) { publisher in
        try await publisher.waitUntilConnected()
        var buses: [MessageBus] = []
        var runners: [Task<Void, any Error>] = []
        for _ in 0..<subscribers {
            let bus = MessageBus(configuration: configuration, logger: benchLogger)
            runners.append(Task { try await bus.run() })
            buses.append(bus)
        }
        defer {
            for bus in buses { bus.shutdown() }
        }
        var subscriptions: [(Subscription<Stamped>, (any TaskExecutor)?)] = []
        var rawSubscriptions: [(Subscription<[UInt8]>, (any TaskExecutor)?)] = []
        for bus in buses {
            let executor = onIOThread ? bus.ioThreadExecutor : nil
            if raw {
                rawSubscriptions.append(
                    (try await bus.subscribeRaw(toExchangeNamed: bus.name(of: .events), patterns: ["bench.#"]), executor))
            } else {
                subscriptions.append((try await bus.subscribe(to: .events, patterns: ["bench.#"], as: Stamped.self), executor))
            }
        }
        let cpuAtStart = CPUTime.ownSeconds
        let started = ContinuousClock.now
        let latencies = try await withThrowingTaskGroup(of: [Duration].self) { group in
            for (subscription, executor) in rawSubscriptions {
                group.addTask(executorPreference: executor) {
                    var mine: [Duration] = []
                    mine.reserveCapacity(messages)
                    for await delivery in subscription {
                        mine.append(.nanoseconds(Int64(now() - sentAt(in: delivery.message))))
                        if mine.count == messages { break }
                    }
                    return mine
                }
            }
            for (subscription, executor) in subscriptions {
                group.addTask(executorPreference: executor) {
                    var mine: [Duration] = []
                    mine.reserveCapacity(messages)
                    for await delivery in subscription {
                        mine.append(.nanoseconds(Int64(now() - delivery.message.sentAt)))
                        if mine.count == messages { break }
                    }
                    return mine
                }
            }
            let exchange = publisher.name(of: .events)
            let properties = MessageProperties(contentType: jsonContentType, type: "Object", appID: WireFormat.appID)
            for sequence in 0..<messages {
                let routingKey = "bench.event.\(sequence % 16)"
                if raw {
                    // The same JSON as `Stamped`, written without an encoder: raw measures the bus alone.
                    let body = Array("{\"sequence\":\(sequence),\"sentAt\":\(now())}".utf8)
                    try await publisher.publishRaw(body: body, toExchangeNamed: exchange, routingKey: routingKey, properties: properties)
                } else {
                    try await publisher.publish(Stamped(sequence: sequence, sentAt: now()), to: .events, routingKey: routingKey)
                }
            }
            var all: [Duration] = []
            for try await part in group { all += part }
            return all
        }
        let elapsed = ContinuousClock.now - started
        Figures(
            caseName: raw ? "\(caseName)-raw" : caseName, count: latencies.count, elapsed: elapsed, latencies: latencies,
            extra: [
                "messages": "\(messages)", "subscribers": "\(subscribers)", "broadcast_window": "\(configuration.broadcastWindow)",
                "consumers": onIOThread ? "\"io-thread\"" : "\"pool\"",
            ],
            cpuAtStart: cpuAtStart
        ).printLine()
        for runner in runners { runner.cancel() }
    }
}

struct PublishBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish", abstract: "Publish as fast as possible to one subscriber; rate and publish-to-delivery latency.")

    @Option(help: "Messages to publish") var messages = 100_000
    @Flag(help: "Bytes in, bytes out: publish and receive without JSON coding") var raw = false
    @Option(help: "Broadcast window (0: auto-ack, as the rabbitmq-c baseline; default: the library's)") var broadcastWindow: Int?
    @Flag(help: "The subscriber reads on the cooperative pool instead of its bus's I/O thread") var consumersOnPool = false

    func run() async throws {
        try await publishAndReceive(
            caseName: "publish", messages: messages, subscribers: 1, raw: raw, broadcastWindow: broadcastWindow,
            onIOThread: !consumersOnPool)
    }
}

struct FanoutBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fanout", abstract: "Broadcast events to K subscribers; deliveries per second and latency.")

    @Option(help: "Events to publish") var events = 50_000
    @Option(help: "Subscribers (each its own connection and queue)") var subscribers = 4
    @Flag(help: "Bytes in, bytes out: publish and receive without JSON coding") var raw = false
    @Option(help: "Broadcast window (0: auto-ack, as the rabbitmq-c baseline; default: the library's)") var broadcastWindow: Int?
    @Flag(help: "Subscribers read on the cooperative pool instead of their buses' I/O threads") var consumersOnPool = false

    func run() async throws {
        try await publishAndReceive(
            caseName: "fanout", messages: events, subscribers: subscribers, raw: raw, broadcastWindow: broadcastWindow,
            onIOThread: !consumersOnPool)
    }
}
