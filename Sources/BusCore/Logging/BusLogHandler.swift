import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// A swift-log handler that publishes every record to `on.logging` as RackHD's log publisher
/// did: a ``LogEvent`` body, AMQP type `LogEvent`, routing key the ``LogLevel`` name.
///
/// Logging never waits for the broker: `log` hands the record to a shared ``BusLogPublisher``,
/// whose bounded buffer drops (and counts) records rather than block or grow.
///
/// ```swift
/// let bus = MessageBus(configuration: configuration)   // its logger predates the bootstrap
/// let publisher = BusLogPublisher(bus: bus)
/// LoggingSystem.bootstrap { label in
///     MultiplexLogHandler([
///         StreamLogHandler.standardError(label: label),
///         BusLogHandler(label: label, serviceName: "on-dhcp", publisher: publisher),
///     ])
/// }
/// // Run `publisher` after `bus` in the ServiceGroup, so that it flushes before the bus closes.
/// ```
public struct BusLogHandler: LogHandler {
    public let label: String
    public let serviceName: String
    public let publisher: BusLogPublisher
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    /// Computed once: the check runs on every record.
    private let isBusLabel: Bool

    /// - Parameters:
    ///   - serviceName: the ``LogEvent/name`` of every record (RackHD: `on-dhcp`, `on-taskgraph`).
    ///   - minimumLevel: records below it are not published (the handler's initial `logLevel`).
    public init(
        label: String, serviceName: String, publisher: BusLogPublisher, minimumLevel: Logger.Level = .info,
        metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider
    ) {
        self.label = label
        self.serviceName = serviceName
        self.publisher = publisher
        self.logLevel = minimumLevel
        self.metadataProvider = metadataProvider
        self.isBusLabel = BusLogPublisher.isBusLabel(label)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Appends the record to the publisher's buffer and returns; never suspends, never waits for the broker.
    public func log(event: Logging.LogEvent) {
        // `Logger` filters by level already; a handler inside a multiplexer may be asked anyway.
        guard event.level >= logLevel, !isBusLabel, !BusLogPublisher.isDraining else { return }
        var merged = metadata
        if let provided = metadataProvider?.get(), !provided.isEmpty {
            merged.merge(provided) { _, provided in provided }
        }
        if let explicit = event.metadata, !explicit.isEmpty {
            merged.merge(explicit) { _, explicit in explicit }
        }
        if let error = event.error {
            // The keys swift-log's StreamLogHandler uses, so both outputs read alike.
            merged["error.message"] = "\(error)"
            merged["error.type"] = "\(String(reflecting: type(of: error)))"
        }
        publisher.submit(
            PendingLogRecord(
                serviceName: serviceName, label: label, level: event.level, message: event.message.description, metadata: merged,
                date: Date(), file: event.file, line: event.line))
    }
}

/// Where a ``BusLogPublisher`` sends its records: the bus, or anything else (tests, other transports).
public struct LogEventSink: Sendable {
    private let send: @Sendable (LogEvent) async throws -> Void

    public init(_ send: @escaping @Sendable (LogEvent) async throws -> Void) {
        self.send = send
    }

    public func publish(_ event: LogEvent) async throws {
        try await send(event)
    }

    /// Publishes to the bus's `on.logging` with the level as routing key: JSON, AMQP type `LogEvent`.
    /// While the broker is unreachable the bus keeps the messages (up to its own bound).
    public static func bus(_ bus: MessageBus) -> LogEventSink {
        let exchange = bus.name(of: .logging)
        return LogEventSink { event in
            try await bus.publishRaw(
                body: try WireFormat.encode(event), toExchangeNamed: exchange, routingKey: event.level.rawValue,
                properties: bus.outboundProperties(type: LogEvent.payloadType))
        }
    }
}

/// A record as `log` captured it; turned into a ``LogEvent`` (JSON conversion, redaction,
/// timestamp formatting) by the drain, so that the logging thread pays for none of that.
struct PendingLogRecord: Sendable {
    var serviceName: String
    var label: String
    var level: Logger.Level
    var message: String
    var metadata: Logger.Metadata
    var date: Date
    var file: String
    var line: UInt

    func event(host: String) -> LogEvent {
        LogEvent(
            serviceName: serviceName, host: host, label: label, level: level, message: message, metadata: metadata, date: date,
            file: file, line: line)
    }
}

/// The shared buffer between every ``BusLogHandler`` of a process and the bus.
///
/// `submit` (called by `log`) appends under a lock and returns; ``run()`` drains the buffer into
/// the sink. At most ``capacity`` records wait or are being published; beyond that a record is
/// dropped and counted in ``droppedCount`` and the `rackbus_log_dropped_total` counter, so a
/// stalled broker costs bounded memory, never a blocked caller. Failed publishes are dropped and
/// counted too (RackHD swallowed them).
///
/// It is a `Service`: on graceful shutdown it stops taking records, publishes what is buffered,
/// then returns; on cancellation it returns at once and counts what is left as dropped. Records
/// submitted before ``run()`` starts wait in the buffer; records submitted once shutdown began
/// are dropped.
public final class BusLogPublisher: Service, Sendable {
    public static let defaultCapacity = 10_000

    /// The bus's own logger label. Its records are never published: publishing one could make
    /// the bus log again (for example while it cannot reach the broker), without end.
    public static let busLabel = "rackbus.bus"

    /// The maximum number of records buffered or in flight.
    public let capacity: Int
    /// The ``LogEvent/host`` of every record.
    public let host: String
    private let sink: LogEventSink
    /// Records being published keep their room until published, so the bound covers them too.
    private let buffer: BatchQueue<PendingLogRecord>
    private let state = Mutex(State())
    private let droppedCounter: Counter

    /// Set while the drain publishes: anything logged synchronously from inside the sink (the
    /// bus under any label) is ignored, which guards against re-entrancy whatever the labels.
    @TaskLocal static var isDraining = false

    /// Room is given back to `log` every so many published records, not only after a whole batch.
    private static let releaseStride = 64

    private struct State {
        var dropped = 0
        var published = 0
        var started = false
        var cancelled = false
    }

    /// - Parameter metricsFactory: where `rackbus_log_dropped_total` is counted; the global metrics system unless a test
    ///   gives its own.
    public init(
        sink: LogEventSink, capacity: Int = BusLogPublisher.defaultCapacity, host: String = LogEvent.localHostName,
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.sink = sink
        self.buffer = BatchQueue(capacity: capacity, holdsTakenElements: true)
        self.capacity = buffer.capacity
        self.host = host
        self.droppedCounter = Counter(label: "rackbus_log_dropped_total", factory: metricsFactory)
    }

    /// Publishes to `bus` (see ``LogEventSink/bus(_:)``).
    public convenience init(
        bus: MessageBus, capacity: Int = BusLogPublisher.defaultCapacity, host: String = LogEvent.localHostName,
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.init(sink: .bus(bus), capacity: capacity, host: host, metricsFactory: metricsFactory)
    }

    /// Records dropped because the buffer was full, the publisher had stopped, or the sink failed.
    public var droppedCount: Int { state.withLock { $0.dropped } }
    /// Records the sink accepted (for the bus: queued for the connection).
    public var publishedCount: Int { state.withLock { $0.published } }
    /// Records waiting or being published.
    public var bufferedCount: Int { buffer.count }

    static func isBusLabel(_ label: String) -> Bool {
        label == busLabel || label.hasPrefix(busLabel + ".")
    }

    /// Buffers a record, or drops it when the buffer is full. Never suspends.
    func submit(_ record: PendingLogRecord) {
        guard !buffer.append(record) else { return }
        countDropped(1)
    }

    /// Drains the buffer into the sink until graceful shutdown (after a final flush) or cancellation.
    /// A publisher runs once; a second call returns at once.
    public func run() async throws {
        let starts = state.withLock { state -> Bool in
            defer { state.started = true }
            return !state.started
        }
        guard starts else { return }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await Self.$isDraining.withValue(true) {
                    await self.drain()
                }
            } onGracefulShutdown: {
                self.shutdown()
            }
        } onCancel: {
            self.state.withLock { $0.cancelled = true }
            self.buffer.close()
        }
        // The buffer is closed by now, so this returns what was left at once.
        let abandoned = await buffer.takeAll()
        dropTaken(abandoned.count)
    }

    /// Ends ``run()`` as graceful shutdown does: what is buffered is published first.
    public func shutdown() {
        buffer.close()
    }

    private var isCancelled: Bool { state.withLock { $0.cancelled } }

    private func drain() async {
        while true {
            let batch = await buffer.takeAll()
            if batch.isEmpty { return }
            if isCancelled {
                dropTaken(batch.count)
                return
            }
            var done = 0
            var released = 0
            var failed = 0
            for record in batch {
                do {
                    try await sink.publish(record.event(host: host))
                } catch {
                    failed += 1
                }
                done += 1
                guard done - released == Self.releaseStride || done == batch.count else { continue }
                release(done - released, failed: failed)
                released = done
                failed = 0
                if isCancelled {
                    dropTaken(batch.count - done)
                    return
                }
            }
        }
    }

    /// Gives room back for `finished` records the drain is done with.
    private func release(_ finished: Int, failed: Int) {
        buffer.release(finished)
        state.withLock { state in
            state.published += finished - failed
            state.dropped += failed
        }
        if failed > 0 { droppedCounter.increment(by: Int64(failed)) }
    }

    /// Drops `count` taken records unpublished, giving their room back.
    private func dropTaken(_ count: Int) {
        guard count > 0 else { return }
        buffer.release(count)
        countDropped(count)
    }

    private func countDropped(_ count: Int) {
        state.withLock { $0.dropped += count }
        droppedCounter.increment(by: Int64(count))
    }
}
