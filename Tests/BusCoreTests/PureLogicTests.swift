import Foundation
import Testing

@testable import BusCore

@Suite("Topic patterns")
struct TopicPatternTests {
    @Test(arguments: [
        ("graph.*.g1", "graph.started.g1", true),
        ("graph.*.g1", "graph.started.extra.g1", false),
        ("graph.*", "graph", false),
        ("dhcp.#", "dhcp", true),
        ("dhcp.#", "dhcp.bind.success.n1", true),
        ("#", "anything.at.all", true),
        ("#.n1", "tftp.success.n1", true),
        ("#.n1", "tftp.success.n2", false),
        ("a.#.z", "a.z", true),
        ("a.#.z", "a.b.c.z", true),
        ("a.#.z", "a.b.c", false),
        ("methods.lookupIpLease", "methods.lookupIpLease", true),
        ("*", "", true),
        ("*.*", "a", false),
    ])
    func matches(pattern: String, key: String, expected: Bool) {
        #expect(TopicPattern(pattern).matches(key) == expected)
    }
}

@Suite("Configuration from URLs")
struct ConfigurationTests {
    @Test func defaults() throws {
        let configuration = try BusConfiguration(url: BusConfiguration.defaultURL)
        #expect(configuration.host == "127.0.0.1")
        #expect(configuration.port == 5672)
        #expect(configuration.user == "guest")
        #expect(configuration.password == "guest")
        #expect(configuration.virtualHost == "/")
        #expect(configuration.tls == nil)
        #expect(configuration.exchangePrefix == "on")
        #expect(configuration.defaultCallTimeout > .seconds(1), "RackHD's 1 s default is not repeated")
    }

    @Test func fullURL() throws {
        let configuration = try BusConfiguration(
            url:
                "amqps://ops:s%40cret@broker.lab:5999/rack%2Fhd?heartbeat=15&connection_timeout=2500&broadcast_window=100&cacertfile=/etc/ca.pem&certfile=/etc/c.pem&keyfile=/etc/k.pem&verify=verify_peer"
        )
        #expect(configuration.host == "broker.lab")
        #expect(configuration.port == 5999)
        #expect(configuration.user == "ops")
        #expect(configuration.password == "s@cret")
        #expect(configuration.virtualHost == "rack/hd")
        #expect(configuration.heartbeat == .seconds(15))
        #expect(configuration.connectTimeout == .milliseconds(2500))
        #expect(configuration.broadcastWindow == 100)
        #expect(configuration.tls?.caCertificatePath == "/etc/ca.pem")
        #expect(configuration.tls?.clientCertificatePath == "/etc/c.pem")
        #expect(configuration.tls?.clientKeyPath == "/etc/k.pem")
        #expect(configuration.tls?.verifyPeer == true)
        #expect(!configuration.redactedURL.contains("s@cret"))
    }

    @Test func broadcastWindowDefaultsToABoundAndZeroTurnsItOff() throws {
        #expect(try BusConfiguration(url: "amqp://h/").broadcastWindow == 4096)
        #expect(try BusConfiguration(url: "amqp://h/?broadcast_window=0").broadcastWindow == 0)
    }

    @Test func exchangesAreDeclaredUnlessThePassiveOptionSaysCheckOnly() throws {
        #expect(try BusConfiguration(url: "amqp://h/").declaresExchanges)
        #expect(try BusConfiguration(url: "amqp://h/?exchanges=declare").declaresExchanges)
        #expect(try !BusConfiguration(url: "amqp://h/?exchanges=passive").declaresExchanges)
        #expect(try !BusConfiguration(url: "amqp://a/?exchanges=passive,amqp://b/?exchanges=passive").declaresExchanges)
        // What the operator reads when a declaration is refused.
        #expect(EngineLoop.exchangeProblem(replyCode: 404, passive: true).contains("scripts/broker users"))
        #expect(EngineLoop.exchangeProblem(replyCode: 403, passive: false).contains("exchanges=passive"))
        #expect(EngineLoop.exchangeProblem(replyCode: 406, passive: false) == "exchange exists with different flags")
    }

    @Test func amqpsDefaultsToPort5671() throws {
        #expect(try BusConfiguration(url: "amqps://localhost").port == 5671)
        #expect(try BusConfiguration(url: "amqp://localhost").port == 5672)
    }

    @Test func verifyNone() throws {
        let tls = try #require(try BusConfiguration(url: "amqps://h/?verify=verify_none").tls)
        #expect(!tls.verifyPeer)
        #expect(!tls.verifyHostname)
    }

    @Test(arguments: [
        "http://h/", "amqp://h/?heartbeat=-1", "amqp://h/?heartbeat=x", "amqp://h:0/", "amqps://h/?verify=maybe", "::",
        "amqp://h/?broadcast_window=-1", "amqp://h/?broadcast_window=65536", "amqp://h/?exchanges=maybe",
    ])
    func refusesBadURLs(url: String) {
        #expect(throws: BusError.self) { try BusConfiguration(url: url) }
    }

    @Test func environment() throws {
        let configuration = try BusConfiguration.fromEnvironment(["RACKBUS_AMQP_URL": "amqp://a:b@10.0.0.1:1234/v"])
        #expect(configuration.host == "10.0.0.1")
        #expect(configuration.port == 1234)
        #expect(configuration.virtualHost == "v")
        #expect(try BusConfiguration.fromEnvironment([:]).port == 5672)
    }

    @Test func exchangeNames() {
        var configuration = BusConfiguration()
        #expect(configuration.name(of: .taskGraphRunner) == "on.task-graph-runner")
        configuration.exchangePrefix = "lab"
        #expect(configuration.name(of: .events) == "lab.events")
        #expect(Exchange.named("on.dhcp", prefix: "on") == .dhcp)
        #expect(Exchange.named("scheduler", prefix: "on") == .scheduler)
        #expect(Exchange.conventions.count == 9)
        #expect(Set(Exchange.conventions).count == 9)
    }
}

@Suite("Reconnect backoff and the connection lifecycle")
struct LifecycleTests {
    let policy = ReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(5), multiplier: 2, jitter: 0.5)

    @Test func backoffGrowsAndCaps() {
        #expect(policy.delay(beforeAttempt: 1, random: 0) == .zero)
        #expect(policy.delay(beforeAttempt: 2, random: 0) == .milliseconds(100))
        #expect(policy.delay(beforeAttempt: 3, random: 0) == .milliseconds(200))
        #expect(policy.delay(beforeAttempt: 4, random: 0) == .milliseconds(400))
        #expect(policy.delay(beforeAttempt: 4, random: 1) == .milliseconds(600))
        #expect(policy.delay(beforeAttempt: 40, random: 0.9) == .seconds(5))
        #expect(policy.delay(beforeAttempt: 1000, random: 0) == .seconds(5))
    }

    @Test func connectFailReconnectLose() {
        let start = ContinuousClock.now
        var lifecycle = ConnectionLifecycle(policy: policy, now: start)
        #expect(lifecycle.tick(now: start) == .connect(attempt: 1, endpoint: 0))
        #expect(lifecycle.connectFailed(now: start, random: 0) == .none)
        #expect(lifecycle.tick(now: start) == .none, "waits out the backoff")
        #expect(lifecycle.tick(now: start + .milliseconds(100)) == .connect(attempt: 2, endpoint: 0))
        #expect(lifecycle.connectSucceeded() == .established(generation: 1, isReconnect: false))
        #expect(lifecycle.isConnected)
        #expect(lifecycle.tick(now: start + .seconds(1)) == .none)
        let later = start + .seconds(2)
        #expect(lifecycle.connectionLost(now: later) == .lost(generation: 1, retryAt: later))
        #expect(lifecycle.connectionLost(now: later) == .none, "a second loss report changes nothing")
        #expect(lifecycle.tick(now: later) == .connect(attempt: 1, endpoint: 0), "the first retry after a loss is immediate")
        #expect(lifecycle.connectSucceeded() == .established(generation: 2, isReconnect: true))
        #expect(lifecycle.shutdownRequested() == .close)
        #expect(lifecycle.shutdownRequested() == .none)
        #expect(lifecycle.tick(now: later + .seconds(10)) == .none)
    }

    @Test("three addresses: each gets its try at once, the backoff starts only when all failed, a loss moves on at once")
    func clusterAddresses() {
        let start = ContinuousClock.now
        var lifecycle = ConnectionLifecycle(policy: policy, endpointCount: 3, firstEndpoint: 1, now: start)
        #expect(lifecycle.tick(now: start) == .connect(attempt: 1, endpoint: 1), "starts where the caller's random pick says")
        _ = lifecycle.connectFailed(now: start, random: 0)
        #expect(lifecycle.tick(now: start) == .connect(attempt: 2, endpoint: 2), "the next address, at once")
        _ = lifecycle.connectFailed(now: start, random: 0)
        #expect(lifecycle.tick(now: start) == .connect(attempt: 3, endpoint: 0))
        _ = lifecycle.connectFailed(now: start, random: 0)
        #expect(lifecycle.tick(now: start) == .none, "all three failed: now it waits")
        #expect(lifecycle.tick(now: start + .milliseconds(100)) == .connect(attempt: 4, endpoint: 1))
        for _ in 0..<3 { _ = lifecycle.connectFailed(now: start, random: 0) }
        #expect(lifecycle.nextAttemptAt == start + .milliseconds(200), "the second full round waits twice as long")
        #expect(lifecycle.tick(now: start + .milliseconds(200)) == .connect(attempt: 7, endpoint: 1))
        #expect(lifecycle.connectSucceeded() == .established(generation: 1, isReconnect: false))
        let later = start + .seconds(1)
        _ = lifecycle.connectionLost(now: later)
        #expect(lifecycle.tick(now: later) == .connect(attempt: 1, endpoint: 2), "after a loss: the next node, at once")
    }

    @Test("the default backoff is capped at 1 s, so a node that comes back is tried within about a second")
    func defaultCap() {
        let policy = ReconnectPolicy()
        #expect(policy.maximumDelay == .seconds(1))
        #expect(policy.delay(beforeAttempt: 1000, random: 1) == .seconds(1))
    }
}

@Suite("Broker addresses")
struct EndpointListTests {
    @Test("a comma-separated list of URLs gives every node's address, with the first URL's settings")
    func list() throws {
        let configuration = try BusConfiguration(
            url: "amqp://svc:pw@10.0.0.1:5672/lab?heartbeat=10, amqp://svc:pw@10.0.0.2:5673/lab,amqp://svc:pw@10.0.0.3/lab")
        #expect(configuration.endpoints.map(\.description) == ["10.0.0.1:5672", "10.0.0.2:5673", "10.0.0.3:5672"])
        #expect(configuration.virtualHost == "lab")
        #expect(configuration.heartbeat == .seconds(10))
        #expect(
            configuration.redactedURL
                == "amqp://svc:***@10.0.0.1:5672/lab,amqp://svc:***@10.0.0.2:5673/lab,amqp://svc:***@10.0.0.3:5672/lab")
        #expect(try BusConfiguration(url: "amqp://a:b@h/").endpoints.count == 1)
    }

    @Test(
        "a list whose URLs disagree, or with an empty entry, is refused without showing a password",
        arguments: [
            "amqp://u:secret@h1/,amqps://u:secret@h2/", "amqp://u:secret@h1/,amqp://v:secret@h2/",
            "amqp://u:secret@h1/a,amqp://u:secret@h2/b", "amqp://u:secret@h1/,,amqp://u:secret@h2/",
        ])
    func refused(url: String) {
        #expect(throws: BusError.self) { try BusConfiguration(url: url) }
        do {
            _ = try BusConfiguration(url: url)
        } catch {
            #expect(!"\(error)".contains("secret"), "\(error)")
        }
    }
}

@Suite("Publisher-confirm bookkeeping")
struct ConfirmTrackerTests {
    @Test func singleAndMultipleAcks() {
        var tracker = ConfirmTracker<String>()
        #expect(tracker.add("a", messageID: "m1") == 1)
        #expect(tracker.add("b", messageID: "m2") == 2)
        #expect(tracker.add("c", messageID: "m3") == 3)
        let single = tracker.ack(2, multiple: false)
        #expect(single.map(\.0) == ["b"])
        tracker.markReturned(messageID: "m3")
        let rest = tracker.ack(3, multiple: true)
        #expect(rest.map(\.0) == ["a", "c"])
        #expect(rest.map { "\($0.1)" } == ["confirmed", "unroutable"])
        #expect(tracker.count == 0)
    }

    @Test func nackAndReset() {
        var tracker = ConfirmTracker<Int>()
        for token in 0..<5 { tracker.add(token, messageID: nil) }
        #expect(tracker.nack(2, multiple: true).map(\.0) == [0, 1])
        #expect(tracker.reset() == [2, 3, 4])
        #expect(tracker.add(9, messageID: nil) == 1, "a new channel numbers from 1 again")
    }

    @Test func manyConfirmsStayBounded() {
        var tracker = ConfirmTracker<Int>()
        for round in 0..<10 {
            for token in 0..<1000 { tracker.add(round * 1000 + token, messageID: nil) }
            let settled = tracker.ack(UInt64((round + 1) * 1000), multiple: true)
            #expect(settled.count == 1000)
        }
        #expect(tracker.count == 0)
    }
}

@Suite("Request decisions and the wire format")
struct WireFormatTests {
    let now: Int64 = 1_700_000_000_000

    func properties(type: String? = "IpAddress", contentType: String? = "application/json", deadline: Int64? = nil) -> MessageProperties {
        var properties = MessageProperties(contentType: contentType, type: type, replyTo: "q")
        if let deadline { properties.headers[EnvelopeHeader.deadline] = .int(deadline) }
        return properties
    }

    func decide(_ properties: MessageProperties, expected: String = "IpAddress", through: String = "on.dhcp") -> RequestDisposition {
        RequestDisposition.evaluate(
            properties: properties, expectedType: expected, exchange: "on.dhcp", deliveredThrough: through, routingKey: "methods.x",
            nowMilliseconds: now)
    }

    @Test("a request that did not come through the server's exchange is refused with 403, even an expired one")
    func refusesOtherExchanges() {
        for through in ["", "on.events", "amq.topic"] {
            for request in [properties(), properties(deadline: now - 1)] {
                guard case .reject(let event) = decide(request, through: through) else {
                    Issue.record("expected a refusal through '\(through)'")
                    continue
                }
                #expect(event.status == 403)
                #expect(event.name == "ForbiddenError")
            }
        }
        guard case .reject(let event) = decide(properties(), through: "") else { return }
        #expect(event.message == "Requests for on.dhcp:methods.x are published to on.dhcp; this one came through the default exchange.")
    }

    @Test func handlesMatchingOrMissingTypes() {
        #expect(decide(properties()) == .handle)
        #expect(decide(properties(type: nil)) == .handle)
        #expect(decide(properties(type: "Object")) == .handle)
        #expect(decide(properties(type: "MacAddress"), expected: "Object") == .handle)
        #expect(decide(properties(contentType: nil)) == .handle)
        #expect(decide(properties(deadline: now + 1)) == .handle)
    }

    @Test func refusesWrongTypeWith400() {
        guard case .reject(let event) = decide(properties(type: "MacAddress")) else {
            Issue.record("expected a rejection")
            return
        }
        #expect(event.status == 400)
        #expect(event.message.hasPrefix("Invalid Request Type (on.dhcp:methods.x:IpAddress)."))
    }

    @Test func refusesNonJSON() {
        guard case .reject(let event) = decide(properties(contentType: "text/plain")) else {
            Issue.record("expected a rejection")
            return
        }
        #expect(event.status == 400)
    }

    @Test func dropsExpiredRequests() {
        #expect(decide(properties(deadline: now)) == .expired)
        #expect(decide(properties(deadline: now - 5000)) == .expired)
    }

    @Test func resultEnvelope() throws {
        let (body, hasValue) = try WireFormat.encodeResult("aa:bb")
        #expect(String(decoding: body, as: UTF8.self) == #"{"value":"aa:bb"}"#)
        #expect(hasValue)
        let (empty, emptyHasValue) = try WireFormat.encodeResult(String?.none)
        #expect(String(decoding: empty, as: UTF8.self) == "{}")
        #expect(!emptyHasValue)
        #expect(try WireFormat.decodeReply(String.self, messageType: "Result", body: body) == "aa:bb")
        #expect(try WireFormat.decodeReply(String?.self, messageType: "Result", body: empty) == nil)
        #expect(try WireFormat.decodeReply(JSONValue.self, messageType: "Result", body: Array(#"{"value":{}}"#.utf8)) == .object([:]))
        #expect(throws: BusError.self) { try WireFormat.decodeReply(String.self, messageType: "Result", body: empty) }
    }

    @Test func errorEventReplies() throws {
        let body = Array(
            #"{"name":"NotFoundError","message":"no lease","stack":"NotFoundError: no lease","context":{"ip":"10.1.1.1"},"status":404}"#
                .utf8)
        do {
            _ = try WireFormat.decodeReply(String.self, messageType: "ErrorEvent", body: body)
            Issue.record("expected a throw")
        } catch {
            #expect(error.code == .remote)
            #expect(error.remote?.name == "NotFoundError")
            #expect(error.status == 404)
            #expect(error.remote?.context["ip"] == "10.1.1.1")
            #expect(!error.isRetriable)
        }
        // A sloppy ErrorEvent (no stack, no context) still yields its name and message.
        let sloppy = WireFormat.decodeErrorEvent(Array(#"{"name":"Error","message":"boom"}"#.utf8))
        #expect(sloppy.name == "Error")
        #expect(sloppy.message == "boom")
        let garbage = WireFormat.decodeErrorEvent(Array("\u{1}\u{2}".utf8))
        #expect(garbage.name == "Error")
    }

    @Test func errorEventShape() throws {
        let event = ErrorEvent.badRequest("bad mac", context: ["mac": "zz"])
        let json = try JSONDecoder().decode(JSONValue.self, from: Data(WireFormat.encode(event)))
        #expect(json["name"] == "BadRequestError")
        #expect(json["message"] == "bad mac")
        #expect(json["stack"]?.stringValue?.isEmpty == false, "RackHD's schema requires a string stack")
        #expect(json["context"] == ["mac": "zz"])
        #expect(json["status"] == 400)
    }

    @Test func errorsBecomeErrorEvents() {
        struct Plain: Error {}
        struct Custom: ErrorEventConvertible {
            var errorEvent: ErrorEvent { .conflict("pinned elsewhere") }
        }
        #expect(ErrorEvent.from(Plain()).status == 500)
        #expect(ErrorEvent.from(Custom()).status == 409)
        #expect(ErrorEvent.from(ErrorEvent.notFound("x")).name == "NotFoundError")
        let timeout = ErrorEvent.from(BusError(code: .timeout, message: "slow"))
        #expect(timeout.name == "BusError")
    }

    @Test func internalErrorsAreConcealed() {
        struct Leaky: Error, CustomStringConvertible {
            var description: String { "cannot open /var/lib/rackbus/secret.sqlite (token=hunter2)" }
        }
        let event = ErrorEvent.from(Leaky())
        #expect(event.status == 500)
        #expect(event.name == "InternalServerError")
        #expect(!event.message.contains("hunter2") && !event.stack.contains("hunter2") && !event.message.contains("secret.sqlite"))
        let errorID = event.context["errorId"]?.stringValue ?? ""
        #expect(!errorID.isEmpty)
        #expect(event.message.contains(errorID))
        #expect(ErrorEvent.from(Leaky()).context["errorId"] != event.context["errorId"], "each error gets its own id")
        // A bus failure keeps its code, not its message (which may name a broker or a queue).
        let bus = ErrorEvent.from(BusError(code: .timeout, message: "no reply from amqp://broker.internal:5672"))
        #expect(bus.name == "BusError")
        #expect(bus.context["code"] == "timeout")
        #expect(!bus.message.contains("broker.internal"))
        // What a handler throws on purpose is its reply, unchanged, a 500 included.
        #expect(ErrorEvent.from(ErrorEvent.internalError("the pool is exhausted")) == .internalError("the pool is exhausted"))
        #expect(ErrorEvent.from(BusError.remote(.notFound("gone"))) == .notFound("gone"))
    }

    @Test func retriability() {
        #expect(BusError(code: .timeout, message: "").isRetriable)
        #expect(BusError(code: .connectionLost, message: "").isRetriable)
        #expect(!BusError(code: .decoding, message: "").isRetriable)
        #expect(!BusError(code: .shutdown, message: "").isRetriable)
        #expect(BusError.remote(.internalError("x")).isRetriable)
        #expect(!BusError.remote(.badRequest("x")).isRetriable)
    }

    @Test func correlationIDs() {
        let codec = CorrelationIDCodec(prefix: "42-abc")
        #expect(codec.decode(codec.encode(7)) == 7)
        #expect(codec.decode("41-abc.7") == nil, "another process's id")
        #expect(codec.decode(nil) == nil)
        #expect(codec.decode("garbage") == nil)
        #expect(codec.decode("42-abc.x") == nil)
    }

    @Test func jsonValueRoundTrip() throws {
        let text = #"{"a":[1,2.5,true,null,"s"],"b":{"c":{}}}"#
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        let again = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(value))
        #expect(value == again)
        #expect(value["a"] == [1, 2.5, true, nil, "s"])
    }
}

@Suite("Ack coalescing")
struct AckCoalescerTests {
    func frames(_ list: [(tag: UInt64, multiple: Bool)]) -> [String] {
        list.map { "\($0.tag)\($0.multiple ? "+" : "")" }
    }

    @Test func contiguousAcksBecomeOneMultipleAck() {
        var acks = AckCoalescer()
        for tag in UInt64(1)...5 { acks.delivered(tag) }
        #expect(frames(acks.acknowledge([3, 1, 2])) == ["3+"])
        #expect(acks.outstandingCount == 2)
        #expect(frames(acks.acknowledge([4, 5])) == ["5+"])
        #expect(acks.outstandingCount == 0)
    }

    @Test func neverAcknowledgesAnUnackedDeliveryBelow() {
        var acks = AckCoalescer()
        for tag in UInt64(1)...5 { acks.delivered(tag) }
        // 1 is still being handled: 2 and 4 go out singly.
        #expect(frames(acks.acknowledge([4, 2])) == ["2", "4"])
        // Once 1 is acked it goes out alone: 3 is still open.
        #expect(frames(acks.acknowledge([1])) == ["1+"])
        #expect(frames(acks.acknowledge([3])) == ["3+"])
        #expect(frames(acks.acknowledge([5])) == ["5+"])
    }

    @Test func rejectsCountAsSettled() {
        var acks = AckCoalescer()
        for tag in UInt64(1)...3 { acks.delivered(tag) }
        acks.settledIndividually(1)
        #expect(frames(acks.acknowledge([2, 3])) == ["3+"])
        #expect(acks.outstandingCount == 0)
    }

    @Test func resetStartsOver() {
        var acks = AckCoalescer()
        acks.delivered(1)
        acks.reset()
        acks.delivered(1)
        #expect(frames(acks.acknowledge([1])) == ["1+"])
    }

    @Test("the two consuming channels count their tags apart: unacknowledged broadcasts never hold back a work ack")
    func channelsApart() {
        let (work, broadcast) = (EngineStateMachine.Channel.consume.rawValue, EngineStateMachine.Channel.broadcast.rawValue)
        var acks = ChannelAcks()
        for tag in UInt64(1)...3 {
            acks.delivered(tag, on: broadcast)
            acks.delivered(tag, on: work)
        }
        acks.acknowledge(2, on: work)
        acks.acknowledge(1, on: work)
        #expect(acks.hasPending)
        let frames = acks.takeFrames().map { "\($0.channel):\($0.tag)\($0.multiple ? "+" : "")" }
        #expect(frames == ["\(work):2+"], "one multiple ack on the work channel; the broadcasts do not stand in front")
        #expect(!acks.hasPending)
        #expect(acks.outstandingCount(on: work) == 1)
        #expect(acks.outstandingCount(on: broadcast) == 3)
        acks.settledIndividually(3, on: work)
        acks.acknowledge(3, on: broadcast)
        #expect(acks.takeFrames().map { "\($0.channel):\($0.tag)\($0.multiple ? "+" : "")" } == ["\(broadcast):3"])
        #expect(acks.outstandingCount(on: work) == 0)
        acks.reset()
        #expect(acks.outstandingCount(on: broadcast) == 0)
    }
}

@Suite("Observed reply keys")
struct ObservedReplyKeyTests {
    @Test func namesTheMethodAndTheCallersReplyQueue() {
        #expect(
            WireFormat.observedReplyKey(routingKey: "methods.lookupIpLease", replyTo: "rackbus.reply.cli.abc1234")
                == "reply.methods.lookupIpLease.rackbus.reply.cli.abc1234")
    }

    @Test func staysWithinAMQPsShortStringLimit() {
        let key = WireFormat.observedReplyKey(routingKey: "methods.x", replyTo: String(repeating: "é", count: 200))
        #expect(key.utf8.count <= 255)
        #expect(key.hasPrefix("reply.methods.x.é"))
    }
}
