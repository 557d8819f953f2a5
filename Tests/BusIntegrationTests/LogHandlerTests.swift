import BusCore
import BusTestSupport
import Foundation
import Logging
import Testing

@Suite("Logging to on.logging on the real broker", .timeLimit(.minutes(2)))
struct LogHandlerTests {

    private func makeLogger(_ publisher: BusLogPublisher, minimumLevel: Logger.Level = .info) -> Logger {
        Logger(label: "test.module") { label in
            BusLogHandler(label: label, serviceName: "rackbus-tests", publisher: publisher, minimumLevel: minimumLevel)
        }
    }

    @Test("each level goes out with its conventions name as routing key and RackHD's LogEvent body; trace is below the minimum")
    func levelsAndBody() async throws {
        try await TestBroker.withBus { bus in
            let subscription = try await bus.subscribe(to: .logging, patterns: ["#"], as: BusCore.LogEvent.self)
            let publisher = BusLogPublisher(bus: bus, host: "rack1")
            let logger = makeLogger(publisher, minimumLevel: .debug)
            try await whilePublishing(publisher) {
                logger.trace("too chatty")
                let debugLine: UInt = #line + 1
                logger.debug("debug", metadata: ["nodeId": "5a1b"])
                logger.info("info")
                logger.notice("notice")
                logger.warning("warning")
                logger.error("error")
                logger.critical("critical")
                let deliveries = try await collect(subscription, count: 6)
                #expect(deliveries.map(\.routingKey) == ["debug", "info", "notice", "warning", "error", "alert"])
                #expect(deliveries.allSatisfy { $0.type == "LogEvent" && $0.properties.contentType == "application/json" })
                #expect(deliveries.allSatisfy { $0.exchange == bus.name(of: .logging) })
                let events = deliveries.map(\.message)
                #expect(events.map(\.message) == ["debug", "info", "notice", "warning", "error", "critical"])
                #expect(events.map(\.level) == [.debug, .info, .notice, .warning, .error, .alert])
                let first = try #require(events.first)
                #expect(first.name == "rackbus-tests")
                #expect(first.host == "rack1")
                #expect(first.module == "test.module")
                #expect(first.caller == "BusIntegrationTests/LogHandlerTests.swift:\(debugLine)")
                #expect(first.subject == "5a1b")
                #expect(first.context == ["nodeId": "5a1b"])
                #expect(events[1].subject == "Server")
                #expect(first.timestamp.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil, "\(first.timestamp)")
                // Nothing else arrives: the trace record was never published.
                #expect(await drain(subscription, for: .milliseconds(300)).isEmpty)
            }
            #expect(publisher.droppedCount == 0)
        }
    }

    @Test("context: secrets are redacted at any depth, id becomes the subject, mac and ip stay")
    func contextOnTheWire() async throws {
        try await TestBroker.withBus { bus in
            let subscription = try await bus.subscribeRaw(toExchangeNamed: bus.name(of: .logging), patterns: ["warning"])
            let publisher = BusLogPublisher(bus: bus)
            let logger = makeLogger(publisher)
            try await whilePublishing(publisher) {
                logger.warning(
                    "obm check failed",
                    metadata: [
                        "id": "5a1b", "mac": "00:11:22:33:44:55", "ip": "10.1.1.5", "x-auth-token": "t0k3n",
                        "obms": [["service": "ipmi-obm-service", "config": ["user": "root", "password": "calvin", "apiKey": "k"]]],
                        "snmp": ["SNMPCommunity": "public", "monkey": "banana"],
                    ])
                let delivery = try #require(try await collect(subscription, count: 1).first)
                let body = try WireFormat.decode(JSONValue.self, from: delivery.message)
                #expect(body["subject"] == "5a1b")
                #expect(
                    body["context"] == [
                        "mac": "00:11:22:33:44:55", "ip": "10.1.1.5", "x-auth-token": "[REDACTED]",
                        "obms": [
                            ["service": "ipmi-obm-service", "config": ["user": "root", "password": "[REDACTED]", "apiKey": "[REDACTED]"]]
                        ],
                        "snmp": ["SNMPCommunity": "[REDACTED]", "monkey": "banana"],
                    ])
                #expect(String(decoding: delivery.message, as: UTF8.self).contains("calvin") == false)
            }
        }
    }

    @Test("100,000 records into a buffer of 100 return at once; the overflow is counted, the rest arrives")
    func tinyBufferNeverBlocks() async throws {
        try await TestBroker.withBus { bus in
            let subscription = try await bus.subscribe(to: .logging, patterns: ["#"], as: BusCore.LogEvent.self)
            let publisher = BusLogPublisher(bus: bus, capacity: 100)
            let logger = makeLogger(publisher)
            let total = 100_000
            try await whilePublishing(publisher) {
                let elapsed = ContinuousClock().measure {
                    for index in 0..<total {
                        logger.info("record \(index)")
                    }
                }
                #expect(elapsed < .seconds(5), "logging took \(elapsed)")
                #expect(publisher.droppedCount > 0)
                #expect(publisher.bufferedCount <= 100)
                try await eventually(timeout: .seconds(30), pollingEvery: .milliseconds(10)) { publisher.bufferedCount == 0 }
                #expect(publisher.droppedCount + publisher.publishedCount == total)
                try #require(publisher.publishedCount > 0)
                // Whatever was not dropped reaches the broker, in order.
                let deliveries = try await collect(subscription, count: publisher.publishedCount, timeout: .seconds(30))
                let numbers = deliveries.compactMap { Int($0.message.message.dropFirst("record ".count)) }
                #expect(numbers.count == publisher.publishedCount)
                #expect(numbers == numbers.sorted())
            }
        }
    }

    @Test("a bus that never connects: logging neither blocks nor crashes, and the overflow is counted")
    func brokerUnreachable() async throws {
        // Port 1: nothing listens there, so every connection attempt is refused.
        var configuration = try BusConfiguration(url: "amqp://guest:guest@127.0.0.1:1/")
        configuration.exchangePrefix = TestBroker.uniquePrefix()
        configuration.maxBufferedOperations = 50
        configuration.reconnect = ReconnectPolicy(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(200))
        var quiet = Logger(label: "rackbus.bus")
        quiet.logLevel = .critical
        let bus = MessageBus(configuration: configuration, logger: quiet)
        let publisher = BusLogPublisher(bus: bus, capacity: 100)
        let logger = makeLogger(publisher)
        let total = 100_000
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await bus.run() }
            group.addTask { try await publisher.run() }
            let elapsed = ContinuousClock().measure {
                for index in 0..<total {
                    logger.error("record \(index)")
                }
            }
            #expect(elapsed < .seconds(5), "logging took \(elapsed)")
            #expect(!bus.isConnected)
            #expect(publisher.droppedCount > 0)
            #expect(publisher.bufferedCount <= 100)
            // Still responsive afterwards, and the bound still holds.
            try await Task.sleep(for: .milliseconds(200))
            logger.error("after the flood")
            #expect(publisher.bufferedCount <= 100)
            publisher.shutdown()
            bus.shutdown()
            try await group.waitForAll()
        }
        // Every record is accounted for: the bus took it (and will drop what it cannot keep), or it was dropped here.
        #expect(publisher.droppedCount + publisher.publishedCount == total + 1)
        #expect(publisher.bufferedCount == 0)
    }
}
