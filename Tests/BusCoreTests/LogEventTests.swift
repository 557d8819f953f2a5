import BusCore
import BusTestSupport
import Foundation
import Logging
import MetricsTestKit
import Synchronization
import Testing

@Suite("Log levels")
struct LogLevelTests {
    @Test("swift-log's seven levels map onto the conventions' eight; critical is alert, never emerg")
    func fromSwiftLog() {
        let mapped = Logger.Level.allCases.map { LogLevel($0) }
        #expect(mapped == [.silly, .debug, .info, .notice, .warning, .error, .alert])
    }

    @Test("the reverse mapping: emerg and alert are critical, silly is trace")
    func toSwiftLog() {
        #expect(LogLevel.emerg.swiftLogLevel == .critical)
        #expect(LogLevel.alert.swiftLogLevel == .critical)
        #expect(LogLevel.silly.swiftLogLevel == .trace)
        for level in Logger.Level.allCases {
            #expect(LogLevel(level).swiftLogLevel == level)
        }
    }

    @Test("levels are ordered by severity, as swift-log's are, and the names are the routing keys of on.logging")
    func ordering() {
        #expect(LogLevel.allCases.sorted() == [.silly, .debug, .info, .notice, .warning, .error, .alert, .emerg])
        #expect(LogLevel.allCases.map(\.rawValue) == RoutingKeyCatalogue.keys[.logging])
        #expect(LogLevel.warning > .info)
        #expect(LogLevel(Logger.Level.critical) < .emerg)
    }

    @Test("RackHD's own `critical` decodes as alert; unknown names fail")
    func decoding() throws {
        let decoded = try JSONDecoder().decode([LogLevel].self, from: Data(#"["critical","emerg","silly"]"#.utf8))
        #expect(decoded == [.alert, .emerg, .silly])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([LogLevel].self, from: Data(#"["fatal"]"#.utf8)) }
    }
}

@Suite("Redaction of log context")
struct LogRedactionTests {
    @Test(arguments: [
        ("SNMPCommunity", ["snmp", "community"]),
        ("x-auth-token", ["x", "auth", "token"]),
        ("apiKey2", ["api", "key", "2"]),
        ("amqp.routing_key", ["amqp", "routing", "key"]),
        ("IPMIPassword", ["ipmi", "password"]),
        ("monkey", ["monkey"]),
        ("", []),
    ])
    func words(key: String, expected: [String]) {
        #expect(LogRedaction.words(of: key) == expected)
    }

    @Test(arguments: [
        "password", "Password", "oldPassword", "user_passwd", "passphrase", "apiKey", "api_key", "API-KEY", "apikey", "productkey",
        "ProductKey", "sshKeys", "x-auth-token", "accessToken", "refreshtoken", "clientSecret", "SNMPCommunity", "community",
        "authorization", "credentials", "key", "secretAccessKey",
    ])
    func sensitive(key: String) {
        #expect(LogRedaction.isSensitive(key: key))
    }

    @Test(arguments: [
        "monkey", "keyboard", "turkey", "mac", "ip", "nodeId", "routingKey", "amqp.routing_key", "message", "user", "name", "hockey",
        "config.setting",
    ])
    func notSensitive(key: String) {
        #expect(!LogRedaction.isSensitive(key: key))
    }

    @Test("sensitive values are replaced at any depth, inside arrays too, whatever their type")
    func nested() {
        let context: [String: JSONValue] = [
            "user": "admin",
            "password": "hunter2",
            "obms": [
                ["service": "ipmi-obm-service", "config": ["host": "10.1.1.1", "user": "root", "password": "calvin"]],
                ["service": "snmp", "config": ["community": "public", "apiKeys": ["a", "b"]]],
            ],
            "secret": ["nested": "object"],
            "count": 3,
        ]
        let expected: [String: JSONValue] = [
            "user": "admin",
            "password": "[REDACTED]",
            "obms": [
                ["service": "ipmi-obm-service", "config": ["host": "10.1.1.1", "user": "root", "password": "[REDACTED]"]],
                ["service": "snmp", "config": ["community": "[REDACTED]", "apiKeys": "[REDACTED]"]],
            ],
            "secret": "[REDACTED]",
            "count": 3,
        ]
        #expect(LogRedaction.redact(context) == expected)
    }
}

@Suite("LogEvent from a swift-log record")
struct LogEventTests {
    static let date = Date(timeIntervalSince1970: 1_714_564_800.123)

    static func event(_ metadata: Logger.Metadata, level: Logger.Level = .info) -> BusCore.LogEvent {
        BusCore.LogEvent(
            serviceName: "on-dhcp", host: "rack1", label: "Dhcp.Server", level: level, message: "lease bound", metadata: metadata,
            date: date, file: "DHCPService/Server.swift", line: 42)
    }

    @Test("RackHD's fields: name, host, module, level, message, timestamp with milliseconds, caller")
    func fields() {
        let event = Self.event([:], level: .critical)
        #expect(event.name == "on-dhcp")
        #expect(event.host == "rack1")
        #expect(event.module == "Dhcp.Server")
        #expect(event.level == .alert)
        #expect(event.message == "lease bound")
        #expect(event.timestamp == "2024-05-01T12:00:00.123Z")
        #expect(event.caller == "DHCPService/Server.swift:42")
        #expect(event.subject == "Server")
        #expect(event.context == [:])
    }

    @Test("the subject is the id (which leaves the context), else nodeId, else node; mac and ip stay")
    func subject() {
        let withID = Self.event(["id": "5a1b", "nodeId": "other", "mac": "00:11:22:33:44:55", "ip": "10.1.1.5"])
        #expect(withID.subject == "5a1b")
        #expect(withID.context == ["nodeId": "other", "mac": "00:11:22:33:44:55", "ip": "10.1.1.5"])
        #expect(Self.event(["nodeId": "n1", "node": "n2"]).subject == "n1")
        #expect(Self.event(["node": "n2"]).subject == "n2")
        #expect(Self.event(["node": .stringConvertible(7)]).subject == "7")
        // An id that names nothing (empty, or not a scalar) is no subject and stays in the context.
        let empty = Self.event(["id": ""])
        #expect(empty.subject == "Server")
        #expect(empty.context == ["id": ""])
        #expect(Self.event(["id": ["a": "b"]]).subject == "Server")
    }

    @Test("metadata becomes JSON: numbers and booleans given as values stay typed; what JSON cannot hold becomes text")
    func jsonConversion() {
        let event = Self.event([
            "attempt": .stringConvertible(3), "ratio": .stringConvertible(0.5), "ok": .stringConvertible(true),
            "huge": .stringConvertible(UInt64.max), "nan": .stringConvertible(Double.nan), "text": "3",
            "list": [.stringConvertible(1), "two"], "map": ["token": "t0k", "depth": .stringConvertible(2)],
        ])
        #expect(
            event.context == [
                "attempt": 3, "ratio": 0.5, "ok": true, "huge": .string("\(UInt64.max)"), "nan": "nan", "text": "3",
                "list": [1, "two"], "map": ["token": "[REDACTED]", "depth": 2],
            ])
    }

    @Test("the wire form has exactly RackHD's keys and decodes back")
    func wireForm() throws {
        let event = Self.event(["nodeId": "n1", "password": "x"], level: .warning)
        let body = try WireFormat.encode(event)
        let object = try WireFormat.decode(JSONValue.self, from: body)
        guard case .object(let fields) = object else {
            Issue.record("not an object")
            return
        }
        #expect(Set(fields.keys) == ["name", "host", "module", "level", "message", "context", "timestamp", "caller", "subject"])
        #expect(fields["level"] == "warning")
        #expect(fields["context"] == ["nodeId": "n1", "password": "[REDACTED]"])
        #expect(try WireFormat.decode(BusCore.LogEvent.self, from: body) == event)
        #expect(BusCore.LogEvent.payloadType == "LogEvent")
    }

    @Test(
        "timestamps are UTC with milliseconds, truncated as a clock reads",
        arguments: [
            (0, "1970-01-01T00:00:00.000Z"), (0.9996, "1970-01-01T00:00:00.999Z"), (-0.001, "1969-12-31T23:59:59.999Z"),
            (1_714_564_800.123, "2024-05-01T12:00:00.123Z"), (951_782_400.05, "2000-02-29T00:00:00.050Z"),
        ])
    func timestamp(seconds: Double, expected: String) {
        #expect(BusCore.LogEvent.timestamp(for: Date(timeIntervalSince1970: seconds)) == expected)
    }

    @Test(arguments: [
        ("node1.example.com", "node1"), ("node1", "node1"), ("10.1.2.3", "10.1.2.3"), ("fe80::1", "fe80::1"), (".local", ".local"),
    ])
    func shortHostName(name: String, expected: String) {
        #expect(BusCore.LogEvent.shortHostName(name) == expected)
    }
}

/// Keeps what the publisher sends; optionally holds every publish until released.
private final class RecordingSink: Sendable {
    private let events = Mutex<[BusCore.LogEvent]>([])
    private let gate = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((true, []))

    init(open: Bool = true) {
        gate.withLock { $0.open = open }
    }

    var sink: LogEventSink {
        LogEventSink { event in
            await self.waitForGate()
            self.events.withLock { $0.append(event) }
        }
    }

    var received: [BusCore.LogEvent] { events.withLock { $0 } }

    func open() {
        let waiters = gate.withLock { gate in
            gate.open = true
            defer { gate.waiters.removeAll() }
            return gate.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private func waitForGate() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let isOpen = gate.withLock { gate in
                if !gate.open { gate.waiters.append(continuation) }
                return gate.open
            }
            if isOpen { continuation.resume() }
        }
    }
}

@Suite("BusLogPublisher without a broker", .timeLimit(.minutes(1)))
struct BusLogPublisherTests {
    @Test("records pass through the handler's level, metadata and provider into the sink, in order")
    func handlerContract() async throws {
        let recorder = RecordingSink()
        let publisher = BusLogPublisher(sink: recorder.sink, host: "rack1")
        let provider = Logger.MetadataProvider { ["requestId": "r1"] }
        var configured = Logger(label: "test.module") { label in
            BusLogHandler(label: label, serviceName: "svc", publisher: publisher, minimumLevel: .info, metadataProvider: provider)
        }
        configured[metadataKey: "nodeId"] = "n1"
        let logger = configured
        try await whilePublishing(publisher) {
            logger.debug("below the minimum")
            logger.info("first", metadata: ["requestId": "explicit wins"])
            logger.error("second", error: TestFailure("boom"))
            try await eventually(pollingEvery: .milliseconds(5)) { recorder.received.count == 2 }
        }
        let events = recorder.received
        #expect(events.map(\.message) == ["first", "second"])
        #expect(events.map(\.level) == [.info, .error])
        #expect(events.allSatisfy { $0.subject == "n1" && $0.name == "svc" && $0.host == "rack1" && $0.module == "test.module" })
        #expect(events[0].context["requestId"] == "explicit wins")
        #expect(events[1].context["requestId"] == "r1")
        #expect(events[1].context["error.message"] == "boom")
        #expect(logger.handler.logLevel == .info)
    }

    @Test("a full buffer drops new records and counts them, exactly, in the property and the metric")
    func boundedBuffer() async throws {
        let metrics = TestMetrics()
        let recorder = RecordingSink(open: false)
        let publisher = BusLogPublisher(sink: recorder.sink, capacity: 100, metricsFactory: metrics)
        let logger = Logger(label: "test.module") { BusLogHandler(label: $0, serviceName: "svc", publisher: publisher) }
        try await whilePublishing(publisher) {
            // The sink holds every publish: whatever the drain took still counts against the bound.
            for index in 0..<10_000 {
                logger.info("record \(index)")
            }
            #expect(publisher.droppedCount == 9_900)
            #expect(publisher.bufferedCount == 100)
            #expect(try metrics.expectCounter("rackbus_log_dropped_total").totalValue == 9_900)
            recorder.open()
            try await eventually(pollingEvery: .milliseconds(5)) { publisher.publishedCount == 100 }
        }
        #expect(recorder.received.map(\.message) == (0..<100).map { "record \($0)" })
        #expect(publisher.droppedCount == 9_900)
    }

    @Test("records logged before run() wait for it; graceful shutdown publishes them; after it they are dropped")
    func lifecycle() async throws {
        let recorder = RecordingSink()
        let publisher = BusLogPublisher(sink: recorder.sink)
        let logger = Logger(label: "test.module") { BusLogHandler(label: $0, serviceName: "svc", publisher: publisher) }
        logger.info("early")
        publisher.shutdown()
        try await publisher.run()
        #expect(recorder.received.map(\.message) == ["early"])
        logger.info("late")
        #expect(publisher.droppedCount == 1)
        #expect(publisher.bufferedCount == 0)
        try await publisher.run()  // runs once; a second run returns at once
    }

    @Test("cancellation ends the drain at once and counts what was left as dropped")
    func cancellation() async throws {
        let recorder = RecordingSink(open: false)
        let publisher = BusLogPublisher(sink: recorder.sink)
        let logger = Logger(label: "test.module") { BusLogHandler(label: $0, serviceName: "svc", publisher: publisher) }
        let run = Task { try await publisher.run() }
        for index in 0..<500 {
            logger.info("record \(index)")
        }
        try await eventually(pollingEvery: .milliseconds(5)) { publisher.bufferedCount == 500 }
        run.cancel()
        recorder.open()
        try await run.value
        #expect(publisher.publishedCount + publisher.droppedCount == 500)
        #expect(publisher.droppedCount > 0)
        #expect(publisher.bufferedCount == 0)
    }

    @Test("failed publishes are swallowed and counted as dropped")
    func failures() async throws {
        let publisher = BusLogPublisher(sink: LogEventSink { _ in throw TestFailure("broker said no") })
        let logger = Logger(label: "test.module") { BusLogHandler(label: $0, serviceName: "svc", publisher: publisher) }
        try await whilePublishing(publisher) {
            for _ in 0..<3 { logger.warning("lost") }
            try await eventually(pollingEvery: .milliseconds(5)) { publisher.droppedCount == 3 }
        }
        #expect(publisher.publishedCount == 0)
    }

    @Test("the bus's own records, and anything logged from inside the sink, are not published (no loop)")
    func noFeedback() async throws {
        let recorder = RecordingSink()
        let published = Mutex(0)
        let box = Mutex<BusLogPublisher?>(nil)
        // A sink that logs through a BusLogHandler on every publish, as a bus logging its publishes would.
        let publisher = BusLogPublisher(
            sink: LogEventSink { event in
                published.withLock { $0 += 1 }
                if let publisher = box.withLock({ $0 }) {
                    Logger(label: "rackbus.engine") { BusLogHandler(label: $0, serviceName: "svc", publisher: publisher) }
                        .info("published \(event.message)")
                }
                try await recorder.sink.publish(event)
            })
        box.withLock { $0 = publisher }
        let busLogger = Logger(label: "rackbus.bus") { BusLogHandler(label: $0, serviceName: "svc", publisher: publisher) }
        let logger = Logger(label: "test.module") { BusLogHandler(label: $0, serviceName: "svc", publisher: publisher) }
        try await whilePublishing(publisher) {
            busLogger.warning("cannot reach the broker")
            logger.info("one")
            try await eventually(pollingEvery: .milliseconds(5)) { recorder.received.count == 1 }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(recorder.received.map(\.message) == ["one"])
        #expect(published.withLock { $0 } == 1)
    }
}
