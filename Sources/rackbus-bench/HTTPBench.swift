import ArgumentParser
import BusCore
import Foundation
import Glibc
import HTTPService
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NodeProtocol
import NodeRegistry
import Synchronization
import TaskGraphRunner

struct HTTPBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "http",
        abstract: """
            GET profiles requests per second over keep-alive connections (a NIOHTTP1 client), with the process's CPU per request. \
            Without --url it runs a node registry, a TaskGraphRunner and an HTTPService in this process, with one known node with \
            boot settings, so each request makes the bus RPCs of a real boot (getNode, getActiveTaskGraph) and CPU counts all of it.
            """)

    @Option(help: "A profiles URL to load (http://HOST:PORT/api/current/profiles?macs=…); default: serve in this process")
    var url: String?
    @Option(help: "Total requests") var requests = 20_000
    @Option(help: "Connections, one request in flight on each") var concurrency = 32

    func run() async throws {
        if let url {
            guard let target = BenchTarget(url) else {
                throw ValidationError("--url must look like http://127.0.0.1:9080/api/current/profiles?macs=…")
            }
            try await measure(target, server: "external")
            return
        }
        let configuration = try benchConfiguration("rackbus-bench-http")
        try await MessageBus.withBus(configuration: configuration, logger: benchLogger) { bus in
            try await bus.waitUntilConnected()
            let registry = NodeRegistryService(
                bus: bus, configuration: NodeRegistryConfiguration(databasePath: ":memory:"), logger: benchLogger)
            let runner = TaskGraphRunnerService(
                bus: bus, configuration: .init(database: ":memory:", runsTasks: false), logger: benchLogger)
            let http = HTTPService(
                bus: bus,
                configuration: HTTPConfiguration(
                    bootListen: ListenAddress(host: "127.0.0.1", port: 0), apiListen: ListenAddress(host: "127.0.0.1", port: 0)),
                logger: benchLogger)
            try await withThrowingTaskGroup(of: Void.self) { services in
                services.addTask { try await registry.run() }
                services.addTask { try await runner.run() }
                services.addTask { try await http.run() }
                defer { services.cancelAll() }
                await registry.waitUntilReady()
                await runner.waitUntilReady()
                await http.waitUntilReady()
                let mac = "02:be:00:00:00:01"
                let node = try await bus.call(RegisterNode(macs: [mac], name: "bench")).node
                _ = try await bus.call(
                    SetBootSettings(
                        nodeId: node.id, bootSettings: BootSettings(profile: "install-debian.ipxe", options: ["hostname": "bench"])))
                let target = BenchTarget(
                    host: "127.0.0.1", port: http.bootPort ?? 0, path: "/api/current/profiles?macs=02%3Abe%3A00%3A00%3A00%3A01")
                try await measure(target, server: "in-process")
            }
        }
    }

    private func measure(_ target: BenchTarget, server: String) async throws {
        let (total, connections) = (requests, max(1, concurrency))
        // Warm up: the first answers prove the route works before anything is timed.
        let warmUp = try await HTTPLoad.run(target: target, total: min(200, total), connections: min(4, connections))
        guard warmUp.failures == 0 else { throw ValidationError("\(warmUp.failures) of the warm-up requests did not answer 200") }
        let cpuBefore = CPUTime.ownSeconds
        let started = ContinuousClock.now
        let result = try await HTTPLoad.run(target: target, total: total, connections: connections)
        let elapsed = ContinuousClock.now - started
        let cpu = CPUTime.ownSeconds - cpuBefore
        Figures(
            caseName: "http-profiles", count: result.latencies.count, elapsed: elapsed, latencies: result.latencies,
            extra: [
                "concurrency": "\(connections)", "requests": "\(total)", "non_200": "\(result.failures)", "server": "\"\(server)\"",
                "cpu_us_per_request": String(format: "%.1f", cpu * 1e6 / Double(max(1, result.latencies.count))),
            ]
        ).printLine()
    }
}

struct BenchTarget: Sendable {
    var host: String
    var port: Int
    /// Path and query, as sent.
    var path: String

    init(host: String, port: Int, path: String) {
        self.host = host
        self.port = port
        self.path = path
    }

    init?(_ url: String) {
        guard let components = URLComponents(string: url), components.scheme == "http", let host = components.host else { return nil }
        self.host = host
        port = components.port ?? 80
        path =
            (components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath)
            + (components.percentEncodedQuery.map { "?\($0)" } ?? "")
    }
}

/// A load generator: `connections` keep-alive HTTP/1.1 connections, one request at a time on
/// each, until `total` requests are answered.
enum HTTPLoad {
    struct Result: Sendable {
        var latencies: [Duration]
        var failures: Int
    }

    static func run(target: BenchTarget, total: Int, connections: Int) async throws -> Result {
        let next = Counter()
        return try await withThrowingTaskGroup(of: Result.self) { group in
            for _ in 0..<connections {
                group.addTask { try await connection(target: target, take: { next.take(below: total) }) }
            }
            var all = Result(latencies: [], failures: 0)
            for try await part in group {
                all.latencies += part.latencies
                all.failures += part.failures
            }
            return all
        }
    }

    private static func connection(target: BenchTarget, take: @Sendable () -> Bool) async throws -> Result {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .connect(host: target.host, port: target.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: target.path)
        head.headers.add(name: "Host", value: "\(target.host):\(target.port)")
        let request = head
        return try await channel.executeThenClose { inbound, outbound in
            var responses = inbound.makeAsyncIterator()
            var result = Result(latencies: [], failures: 0)
            while take() {
                let begin = ContinuousClock.now
                try await outbound.write(.head(request))
                try await outbound.write(.end(nil))
                var status: UInt = 0
                reading: while let part = try await responses.next() {
                    switch part {
                    case .head(let response): status = response.status.code
                    case .body: continue
                    case .end: break reading
                    }
                }
                result.latencies.append(ContinuousClock.now - begin)
                if status != 200 { result.failures += 1 }
            }
            return result
        }
    }

    /// Hands out request numbers below a limit to the connections.
    final class Counter: Sendable {
        private let value = Mutex(0)
        func take(below limit: Int) -> Bool {
            value.withLock { count in
                guard count < limit else { return false }
                count += 1
                return true
            }
        }
    }
}
