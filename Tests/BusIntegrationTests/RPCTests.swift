import BusCore
import BusTestSupport
import Foundation
import Synchronization
import Testing

/// Starts an echo server on `bus` and runs `body` while it serves.
func withEchoServer<Result: Sendable>(
    _ bus: MessageBus, name: String = "server-1", _ body: @Sendable () async throws -> Result
) async throws -> Result {
    let server = try await bus.server(for: Echo.self) { request, _ in
        EchoReply(text: request.text, number: request.number, servedBy: name)
    }
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await server.run() }
        defer { server.cancel() }
        return try await body()
    }
}

@Suite("RPC over the real broker", .timeLimit(.minutes(2)))
struct RPCTests {
    @Test("a call is answered with the typed reply")
    func roundTrip() async throws {
        try await TestBroker.withBus { bus in
            try await withEchoServer(bus) {
                let reply = try await bus.call(Echo(text: "hello", number: 7))
                #expect(reply == EchoReply(text: "hello", number: 7, servedBy: "server-1"))
            }
        }
    }

    @Test("1,000 concurrent calls each get their own reply")
    func thousandConcurrentCalls() async throws {
        try await TestBroker.withBus { bus in
            try await withEchoServer(bus) {
                try await withThrowingTaskGroup(of: (Int, EchoReply).self) { group in
                    for number in 0..<1000 {
                        group.addTask { (number, try await bus.call(Echo(text: "call-\(number)", number: number))) }
                    }
                    var seen = Set<Int>()
                    for try await (number, reply) in group {
                        #expect(reply.number == number)
                        #expect(reply.text == "call-\(number)")
                        seen.insert(number)
                    }
                    #expect(seen.count == 1000)
                }
            }
        }
    }

    @Test("a call nobody answers times out within its timeout plus a small slack")
    func timeout() async throws {
        try await TestBroker.withBus { bus in
            let started = ContinuousClock.now
            let error = await #expect(throws: BusError.self) {
                _ = try await bus.call(Echo(text: "nobody listens", number: 1), timeout: .seconds(1))
            }
            let elapsed = ContinuousClock.now - started
            #expect(error?.code == .timeout)
            #expect(error?.isRetriable == true)
            #expect(error?.message.contains("Request Timed Out") == true)
            #expect(elapsed >= .seconds(1))
            // The slack allows for the whole suite running in parallel on two cores, where a
            // thread can wait a few hundred milliseconds for a core; the default timeout is 30 s.
            #expect(elapsed < .seconds(1) + .seconds(1), "took \(elapsed)")
        }
    }

    @Test("a slow handler's reply after the timeout is dropped, and the server drops requests whose caller gave up")
    func lateReplyAndExpiredRequest() async throws {
        try await TestBroker.withBus { bus in
            let handled = Locked<[Int]>([])
            let server = try await bus.server(for: Sleeps.self, concurrency: 1) { request, _ in
                handled.withLock { $0.append(request.milliseconds) }
                try await Task.sleep(for: .milliseconds(request.milliseconds))
                return "slept"
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await server.run() }
                // The first call occupies the only slot past its deadline; the second expires in
                // the queue meanwhile and must never reach the handler. (Whether the first is
                // handled in time depends on the machine's load: only the second is checked.)
                async let first = Result(catching: { try await bus.call(Sleeps(milliseconds: 2000), timeout: .milliseconds(1000)) })
                try await Task.sleep(for: .milliseconds(50))
                async let second = Result(catching: { try await bus.call(Sleeps(milliseconds: 10), timeout: .milliseconds(300)) })
                let results = await [first, second]
                for result in results {
                    #expect(throws: BusError.self) { try result.get() }
                }
                try await Task.sleep(for: .milliseconds(1500))
                #expect(!handled.withLock { $0 }.contains(10), "the expired request was handled: \(handled.withLock { $0 })")
                // The server still serves.
                #expect(try await bus.call(Sleeps(milliseconds: 1), timeout: .seconds(5)) == "slept")
                server.cancel()
            }
        }
    }

    @Test("a remote error arrives with its name, message and status")
    func remoteError() async throws {
        try await TestBroker.withBus { bus in
            let server = try await bus.server(for: Fails.self) { request, _ in
                throw ErrorEvent(name: "ConflictError", message: "lease is pinned", context: ["mac": "aa:bb"], status: request.status)
            }
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await server.run() }
                let error = await #expect(throws: BusError.self) {
                    _ = try await bus.call(Fails(status: 409))
                }
                #expect(error?.code == .remote)
                #expect(error?.remote?.name == "ConflictError")
                #expect(error?.remote?.message == "lease is pinned")
                #expect(error?.status == 409)
                #expect(error?.remote?.context["mac"] == "aa:bb")
                #expect(error?.isRetriable == false)
                server.cancel()
            }
        }
    }

    @Test("an absent value is told apart from a value (204 vs 200)")
    func noContent() async throws {
        try await TestBroker.withBus { bus in
            let server = try await bus.server(for: Nothing.self) { _, _ in nil }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await server.run() }
                let reply = try await bus.callRaw(exchangeNamed: bus.name(of: .dhcp), routingKey: Nothing.method, body: Array("{}".utf8))
                #expect(reply.type == "Result")
                #expect(reply.properties.headers[EnvelopeHeader.status] == .int(204))
                #expect(String(decoding: reply.body, as: UTF8.self) == "{}")
                let typed = try await bus.call(Nothing())
                #expect(typed == nil)
                server.cancel()
            }
        }
    }

    @Test("malformed and wrongly typed requests get a 400 ErrorEvent and the server keeps serving")
    func badRequests() async throws {
        try await TestBroker.withBus { bus in
            try await withEchoServer(bus) {
                let exchange = bus.name(of: .dhcp)
                for body in ["not json", "{\"text\": 5}", "[]", ""] {
                    let error = await #expect(throws: BusError.self) {
                        _ = try await bus.callRaw(
                            exchangeNamed: exchange, routingKey: Echo.method, body: Array(body.utf8), type: "EchoRequest")
                    }
                    #expect(error?.status == 400, "body \(body)")
                    #expect(error?.remote?.name == "BadRequestError")
                }
                let wrongType = await #expect(throws: BusError.self) {
                    _ = try await bus.callRaw(
                        exchangeNamed: exchange, routingKey: Echo.method, body: Array("{\"text\":\"a\",\"number\":1}".utf8),
                        type: "MacAddress")
                }
                #expect(wrongType?.status == 400)
                #expect(wrongType?.remote?.message.contains("Invalid Request Type") == true)
                // Still serving.
                let reply = try await bus.call(Echo(text: "after", number: 2))
                #expect(reply.text == "after")
            }
        }
    }

    @Test("a RackHD-style caller (fresh reply queue per call, no correlation id) is answered")
    func rackHDStyleCaller() async throws {
        try await TestBroker.withBus { bus in
            try await withEchoServer(bus) {
                // RackHD: an exclusive, unbound queue `<exchange>:<routingKey>.request:<id>`,
                // reached through the default exchange; no correlation_id on the request.
                let replies = try await bus.subscribeRaw(toExchangeNamed: "", patterns: [])
                let exchange = bus.name(of: .dhcp)
                try await bus.publishRaw(
                    body: Array(#"{"text":"rackhd","number":3}"#.utf8), toExchangeNamed: exchange, routingKey: Echo.method,
                    properties: MessageProperties(contentType: "application/json", type: "EchoRequest", replyTo: replies.queueName))
                let received = try await collect(replies, count: 1)
                #expect(received[0].properties.correlationID == nil)
                #expect(received[0].type == "Result")
                let value = try WireFormat.decodeReply(EchoReply.self, messageType: received[0].type, body: received[0].body)
                #expect(value.text == "rackhd")
            }
        }
    }

    @Test("a server runs up to its concurrency of handlers at once, and no more")
    func serverConcurrencyIsItsBound() async throws {
        try await TestBroker.withBus { bus in
            let running = Mutex((now: 0, most: 0))
            let server = try await bus.server(for: Sleeps.self, concurrency: 4) { request, _ in
                running.withLock {
                    $0.now += 1; $0.most = max($0.most, $0.now)
                }
                try await Task.sleep(for: .milliseconds(request.milliseconds))
                running.withLock { $0.now -= 1 }
                return "slept"
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await server.run() }
                defer { server.cancel() }
                try await withThrowingTaskGroup(of: String.self) { calls in
                    for _ in 0..<12 {
                        calls.addTask { try await bus.call(Sleeps(milliseconds: 300), timeout: .seconds(20)) }
                    }
                    for try await reply in calls { #expect(reply == "slept") }
                }
            }
            #expect(running.withLock { $0.most } == 4)
            #expect(running.withLock { $0.now } == 0)
        }
    }

    @Test("an observed server's replies, errors included, can be followed on the events exchange")
    func observedReplies() async throws {
        try await TestBroker.withBus { bus in
            let copies = try await bus.subscribeRaw(toExchangeNamed: bus.name(of: .events), patterns: ["reply.#"])
            let echo = try await bus.server(for: Echo.self, observed: true) { request, _ in
                EchoReply(text: request.text, number: request.number, servedBy: "observed")
            }
            let fails = try await bus.server(for: Fails.self) { request, _ in
                throw ErrorEvent(name: "ConflictError", message: "not observed", status: request.status)
            }
            let failsObserved = try await bus.server(for: Fails.self, routingKey: "methods.failsObserved", observed: true) { request, _ in
                throw ErrorEvent(name: "ConflictError", message: "observed", status: request.status)
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for server in [echo, fails, failsObserved] { group.addTask { await server.run() } }
                defer { group.cancelAll() }
                _ = try await bus.call(Echo(text: "watched", number: 3))
                _ = try? await bus.call(Fails(status: 409))
                _ = try? await bus.callRaw(
                    exchangeNamed: bus.name(of: .dhcp), routingKey: "methods.failsObserved", body: Array(#"{"status":410}"#.utf8))
                var seen: [Delivery<[UInt8]>] = []
                for await copy in copies {
                    seen.append(copy)
                    if seen.count == 2 { break }
                }
                #expect(seen[0].routingKey.hasPrefix("reply.methods.echo.rackbus.reply."))
                #expect(seen[0].type == "Result")
                #expect(seen[0].properties.correlationID != nil)
                #expect(String(decoding: seen[0].body, as: UTF8.self).contains(#""servedBy":"observed""#))
                #expect(seen[1].routingKey.hasPrefix("reply.methods.failsObserved."))
                #expect(seen[1].type == "ErrorEvent")
                #expect(seen[1].properties.headers[EnvelopeHeader.status]?.intValue == 410)
                // The unobserved server's reply was never copied: it came between the two.
                #expect(!seen.contains { $0.routingKey.hasPrefix("reply.methods.fails.") })
            }
        }
    }

    @Test("two replicas share one method's calls instead of both answering each")
    func replicasShareCalls() async throws {
        let configuration = try TestBroker.configuration()
        try await TestBroker.withBus(configuration) { client in
            try await TestBroker.withBus(configuration) { replicaA in
                try await TestBroker.withBus(configuration) { replicaB in
                    try await withEchoServer(replicaA, name: "a") {
                        try await withEchoServer(replicaB, name: "b") {
                            var servedBy: [String: Int] = [:]
                            try await withThrowingTaskGroup(of: String.self) { group in
                                for number in 0..<200 {
                                    group.addTask { try await client.call(Echo(text: "x", number: number)).servedBy }
                                }
                                for try await name in group { servedBy[name, default: 0] += 1 }
                            }
                            #expect(servedBy.values.reduce(0, +) == 200)
                            #expect((servedBy["a"] ?? 0) > 20, "\(servedBy)")
                            #expect((servedBy["b"] ?? 0) > 20, "\(servedBy)")
                        }
                    }
                }
            }
        }
    }
}
