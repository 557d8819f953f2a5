import BusCore
import BusTestSupport
import Foundation
import HTTPService
import Hummingbird
import HummingbirdTesting
import Logging
import NodeProtocol
import NodeRegistry
import Scheduler
import TaskGraphRunner

/// A configuration for tests: both applications on 127.0.0.1 with ports the system picks, short
/// timeouts so that "nobody answers" shows quickly.
func testConfiguration(
    unknownNodes: UnknownNodePolicy = .discover, discoveryGraph: String = "Graph.Discovery", staticRoot: String = "/nonexistent",
    apiToken: String? = nil, templatesDirectory: String? = nil
) -> HTTPConfiguration {
    HTTPConfiguration(
        bootListen: ListenAddress(host: "127.0.0.1", port: 0), apiListen: ListenAddress(host: "127.0.0.1", port: 0), apiToken: apiToken,
        unknownNodes: unknownNodes, discoveryGraph: discoveryGraph, staticRoot: staticRoot, templatesDirectory: templatesDirectory,
        bootURL: "http://10.9.8.7:9080", serviceCallTimeout: .seconds(3), taskCallTimeout: .seconds(1), discoveryProfileWait: .seconds(8))
}

/// A running HTTPService and clients for its two applications.
struct RunningHTTP: Sendable {
    let service: HTTPService
    var bootPort: Int { service.bootPort ?? 0 }
    var apiPort: Int { service.apiPort ?? 0 }

    func boot(_ path: String, headers: HTTPFields = [:]) async throws -> TestClient.Response {
        try await Self.request(port: bootPort, TestClient.Request(path, method: .get, headers: headers))
    }

    func api(
        _ method: HTTPRequest.Method, _ path: String, json: String? = nil, token: String? = nil, headers extra: [String: String] = [:]
    ) async throws -> TestClient.Response {
        var headers = HTTPFields()
        if json != nil { headers[.contentType] = "application/json" }
        if let token { headers[.authorization] = "Bearer \(token)" }
        for (name, value) in extra {
            if let name = HTTPFields.Element.Name(name) { headers[name] = value }
        }
        return try await Self.request(
            port: apiPort, TestClient.Request(path, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) }))
    }

    static func request(port: Int, _ request: TestClient.Request) async throws -> TestClient.Response {
        try await TestClient.withClient(host: "127.0.0.1", port: port, configuration: .init(timeout: .seconds(20))) { client in
            try await client.execute(request)
        }
    }
}

extension TestClient.Response {
    var text: String { body.map { String(buffer: $0) } ?? "" }
    var json: JSONValue? { try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) }
}

/// Runs an HTTPService on `bus` for `body`.
func withHTTPService<Result: Sendable>(
    bus: MessageBus, _ configuration: HTTPConfiguration, _ body: @Sendable (RunningHTTP) async throws -> Result
) async throws -> Result {
    let service = HTTPService(bus: bus, configuration: configuration, logger: TestBroker.logger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await service.run() }
        defer { group.cancelAll() }
        await service.waitUntilReady()
        guard service.bootPort != nil, service.apiPort != nil else { throw TestFailure("the HTTP service did not start") }
        return try await body(RunningHTTP(service: service))
    }
}

/// Runs the real node registry (in memory) on `bus` for `body`.
func withRegistry<Result: Sendable>(bus: MessageBus, _ body: @Sendable () async throws -> Result) async throws -> Result {
    let registry = NodeRegistryService(
        bus: bus, configuration: NodeRegistryConfiguration(databasePath: ":memory:"), logger: TestBroker.logger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await registry.run() }
        defer { group.cancelAll() }
        await registry.waitUntilReady()
        return try await body()
    }
}

/// Runs the TaskGraphRunner (with its task runner) and a Scheduler on `bus` for `body`.
func withWorkflowServices<Result: Sendable>(bus: MessageBus, _ body: @Sendable () async throws -> Result) async throws -> Result {
    let runner = TaskGraphRunnerService(bus: bus, configuration: .init(database: ":memory:"), logger: TestBroker.logger)
    let scheduler = SchedulerService(bus: bus, logger: TestBroker.logger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await runner.run() }
        group.addTask { try await scheduler.run() }
        defer { group.cancelAll() }
        await runner.waitUntilReady()
        return try await body()
    }
}

/// A MAC of its own for each test (locally administered).
func uniqueMAC() -> String {
    (["02"] + (0..<5).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }).joined(separator: ":")
}

func nodeId(of mac: String) -> String { mac.replacingOccurrences(of: ":", with: "") }

/// iPXE's `${net0/mac:uristring}` spelling.
func uriEncoded(_ mac: String) -> String { mac.replacingOccurrences(of: ":", with: "%3A") }
