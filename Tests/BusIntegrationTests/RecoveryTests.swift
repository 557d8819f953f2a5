import BusCore
import BusTestSupport
import Foundation
import Testing

/// These tests stop and restart the broker, so they hold the broker alone while they run.
// The limit includes waiting to hold the broker alone, behind the cluster and load tests.
@Suite("Recovery from broker restarts", .timeLimit(.minutes(10)))
struct RecoveryTests {
    @Test("after a broker restart, subscriptions and calls work again without restarting the client")
    func brokerRestart() async throws {
        try await TestBroker.withExclusiveBroker {
            let configuration = try TestBroker.configuration()
            try await MessageBus.withBus(configuration: configuration, logger: TestBroker.logger) { bus in
                try await bus.waitUntilConnected()
                let echo = try await bus.server(for: Echo.self) { request, _ in
                    EchoReply(text: request.text, number: request.number, servedBy: "survivor")
                }
                let slow = try await bus.server(for: Sleeps.self) { request, _ in
                    try await Task.sleep(for: .milliseconds(request.milliseconds))
                    return "slept"
                }
                let events = try await bus.subscribe(to: .events, patterns: ["graph.#"], as: NodeEvent.self)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { await echo.run() }
                    group.addTask { await slow.run() }
                    defer {
                        echo.cancel()
                        slow.cancel()
                    }

                    #expect(try await bus.call(Echo(text: "before", number: 1)).text == "before")
                    try await bus.publish(NodeEvent(nodeId: "n1", sequence: 1), to: .events, routingKey: "graph.started.g1")
                    var iterator = events.makeAsyncIterator()
                    #expect(await iterator.next()?.message.sequence == 1)

                    // A call in flight when the broker goes away fails with a retriable error.
                    async let inFlight = Result(catching: { try await bus.call(Sleeps(milliseconds: 5_000), timeout: .seconds(60)) })
                    try await Task.sleep(for: .milliseconds(300))
                    try await TestBroker.brokerScript("restart-app")

                    let lost = await inFlight
                    let error = try #require(lost.failure as? BusError)
                    #expect(error.code == .connectionLost)
                    #expect(error.isRetriable)

                    try await bus.waitUntilConnected(timeout: .seconds(60))
                    let reply = try await retrying { try await bus.call(Echo(text: "after", number: 2), timeout: .seconds(2)) }
                    #expect(reply == EchoReply(text: "after", number: 2, servedBy: "survivor"))

                    // The same subscription object receives again.
                    try await bus.publish(NodeEvent(nodeId: "n1", sequence: 2), to: .events, routingKey: "graph.finished.g1")
                    #expect(await iterator.next()?.message.sequence == 2)
                }
            }
        }
    }

    @Test("a bus started while the broker is down waits for it, then works")
    func startsBeforeTheBroker() async throws {
        try await TestBroker.withExclusiveBroker {
            try await TestBroker.brokerScript("ctl", "stop_app")
            do {
                let configuration = try TestBroker.configuration()
                try await MessageBus.withBus(configuration: configuration, logger: TestBroker.logger) { bus in
                    // Subscribing and serving are queued until the broker appears.
                    async let server = bus.server(for: Echo.self) { request, _ in
                        EchoReply(text: request.text, number: request.number, servedBy: "late")
                    }
                    try await Task.sleep(for: .seconds(1))
                    #expect(bus.isConnected == false)
                    try await TestBroker.brokerScript("ctl", "start_app")
                    try await TestBroker.brokerScript("wait")
                    let echo = try await server
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask { await echo.run() }
                        defer { echo.cancel() }
                        let reply = try await bus.call(Echo(text: "hello", number: 3), timeout: .seconds(10))
                        #expect(reply.servedBy == "late")
                    }
                }
            } catch {
                _ = try? await TestBroker.brokerScript("ctl", "start_app")
                throw error
            }
        }
    }

    @Test("a dropped connection is restored by the client itself")
    func simulatedNetworkFailure() async throws {
        try await TestBroker.withBus { bus in
            try await withEchoServer(bus) {
                let events = try await bus.subscribe(to: .events, patterns: ["sku.#"], as: NodeEvent.self)
                bus.simulateConnectionLoss()
                try await bus.waitUntilConnected(timeout: .seconds(30))
                let reply = try await retrying { try await bus.call(Echo(text: "again", number: 4), timeout: .seconds(2)) }
                #expect(reply.text == "again")
                try await bus.publish(NodeEvent(nodeId: "n", sequence: 9), to: .events, routingKey: "sku.assigned.n")
                #expect(try await collect(events, count: 1)[0].message.sequence == 9)
            }
        }
    }
}

/// Repeats `body` while it fails with a retriable error, for up to `attempts` tries.
func retrying<T: Sendable>(attempts: Int = 20, _ body: () async throws -> T) async throws -> T {
    var lastError: (any Error)?
    for _ in 0..<attempts {
        do {
            return try await body()
        } catch let error as BusError where error.isRetriable {
            lastError = error
            try await Task.sleep(for: .milliseconds(250))
        }
    }
    throw lastError ?? TestFailure("no attempt made")
}

@Suite("Several broker addresses")
struct EndpointListWireTests {
    @Test("with a dead address in the list, every bus connects to the live one, wherever it starts")
    func deadAddressIsSkipped() async throws {
        var configuration = try TestBroker.configuration()
        let live = configuration.endpoints[0]
        configuration.endpoints = [BusConfiguration.Endpoint(host: "127.0.0.1", port: try deadLocalPort()), live]
        // Each bus starts at a random address: several, so that some start at the dead one.
        // (The order of attempts and the backoff are the lifecycle's pure tests.)
        for _ in 0..<6 {
            try await TestBroker.withBus(configuration) { bus in
                #expect(bus.connectedEndpoint == live)
            }
        }
    }
}
