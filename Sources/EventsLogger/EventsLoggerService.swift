import BusCore
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// The events logger: listens to everything on `on.events` and `on.logging`, prints log records
/// (stdout and/or a rotating file), journals events and log records in SQLite with retention,
/// and answers ``QueryEvents`` (`methods.queryEvents` on `on.events`) from the journal.
/// A `Service`: put it after the `MessageBus` in a `ServiceGroup`.
///
/// Its `#` subscription on `on.events` skips `methods.*` keys: those are RPC requests sharing
/// the exchange (its own query among them), never events.
public final class EventsLoggerService: Service, Sendable {
    public let configuration: EventsLoggerConfiguration
    private let bus: MessageBus
    private let logger: Logger
    private let readiness = OneShotSignal()
    private let running = Mutex<(journal: EventJournal?, output: OutputWriter?)>((nil, nil))
    private let journalFullWarned = Atomic<Bool>(false)
    private let eventsReceived = Counter(label: "rackbus_events_logger_messages_total", dimensions: [("exchange", "events")])
    private let logRecordsReceived = Counter(label: "rackbus_events_logger_messages_total", dimensions: [("exchange", "logging")])
    private let journalDrops = Counter(label: "rackbus_events_logger_dropped_total", dimensions: [("stage", "journal")])
    private let outputDrops = Counter(label: "rackbus_events_logger_dropped_total", dimensions: [("stage", "output")])
    private let purged = Counter(label: "rackbus_events_logger_purged_total")

    /// Records waiting for the journal before new ones are dropped (the subscriptions are
    /// broadcast queues: the broker cannot be slowed down, only outrun).
    static let journalQueueCapacity = 100_000

    public init(
        bus: MessageBus, configuration: EventsLoggerConfiguration = .init(), logger: Logger = Logger(label: "rackbus.events-logger")
    ) {
        self.bus = bus
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        // Waiters are released even when start-up fails, so that nobody waits forever.
        defer { readiness.signal() }
        let configuration = self.configuration
        let journal = try await EventJournal.open(path: configuration.journalPath)
        let output: OutputWriter? =
            configuration.writesToStandardOutput || configuration.logFile != nil
            ? try await OutputWriter.start(
                toStandardOutput: configuration.writesToStandardOutput, file: configuration.logFile, format: configuration.lineFormat,
                capacity: configuration.outputBufferCapacity, logger: logger)
            : nil
        running.withLock { $0 = (journal, output) }
        defer { running.withLock { $0 = (nil, nil) } }
        do {
            try await serve(journal: journal, output: output)
        } catch {
            await output?.close()
            throw error
        }
        await output?.close()
    }

    private func serve(journal: EventJournal, output: OutputWriter?) async throws {
        let events = try await bus.subscribeRaw(toExchangeNamed: bus.name(of: .events), patterns: ["#"])
        let logRecords = try await bus.subscribeRaw(toExchangeNamed: bus.name(of: .logging), patterns: ["#"])
        let queries = try await bus.server(for: QueryEvents.self) { request, _ in
            try await journal.entries(matching: request.journalQuery())
        }
        await enforceRetention(on: journal)
        logger.notice(
            "logging events",
            metadata: [
                "events.journal": "\(configuration.journalPath)", "events.log_file": "\(configuration.logFile?.path ?? "-")",
                "events.output_level": "\(configuration.minimumOutputLevel)",
            ])
        readiness.signal()
        let pending = BatchQueue<JournalRecord>(capacity: Self.journalQueueCapacity)
        await withDiscardingTaskGroup { group in
            // The writer outlives the inputs: it stores what they queued, then ends on close().
            group.addTask { await self.writeJournal(from: pending, to: journal) }
            // Inputs end together: on graceful shutdown or cancellation, or when any of them ends
            // by itself (the bus shut down, which ends its subscriptions).
            await withTaskGroup(of: Void.self) { inputs in
                inputs.addTask { await queries.run() }
                inputs.addTask {
                    for await delivery in events {
                        self.eventsReceived.increment()
                        self.take(delivery, from: .events, journalQueue: pending, output: output)
                    }
                }
                inputs.addTask {
                    for await delivery in logRecords {
                        self.logRecordsReceived.increment()
                        self.take(delivery, from: .logging, journalQueue: pending, output: output)
                    }
                }
                inputs.addTask {
                    while true {
                        do {
                            try await Task.sleep(for: self.configuration.retentionInterval)
                        } catch {
                            return
                        }
                        await self.enforceRetention(on: journal)
                    }
                }
                inputs.addTask { try? await gracefulShutdown() }
                await inputs.next()
                inputs.cancelAll()
            }
            pending.close()
        }
    }

    /// Returns once the journal is open, the subscriptions and the query RPC are consuming, and
    /// the start-up retention pass is done. Also returns when `run()` fails to start, or when
    /// the waiting task is cancelled.
    public func waitUntilReady() async {
        await readiness.wait()
    }

    /// Answers a query from the journal in this process, as `methods.queryEvents` would.
    /// Throws a 400 ErrorEvent for bad input, a 503 one while the service is not running.
    public func query(_ request: QueryEvents) async throws -> [JournalEntry] {
        try await currentJournal().entries(matching: request.journalQuery())
    }

    /// How many entries the journal holds.
    public func journalCount() async throws -> Int {
        try await currentJournal().count()
    }

    /// Applies the age and count limits now, rather than at the next periodic pass. Returns how
    /// many entries it removed.
    @discardableResult
    public func enforceRetention() async throws -> Int {
        let removed = try await currentJournal().enforceRetention(
            olderThan: currentMilliseconds() - configuration.maximumAgeMilliseconds, maximumEntries: configuration.maximumEntries)
        purged.increment(by: removed)
        return removed
    }

    /// Returns once every log line received so far is written out.
    public func flushOutput() async {
        await running.withLock { $0.output }?.flush()
    }

    // MARK: Receiving

    private func take(
        _ delivery: Delivery<[UInt8]>, from source: EventsLoggerIntake.Source, journalQueue: BatchQueue<JournalRecord>,
        output: OutputWriter?
    ) {
        let outcome = EventsLoggerIntake.handle(
            source: source, exchange: delivery.exchange, routingKey: delivery.routingKey, body: delivery.body,
            receivedAt: currentMilliseconds(), configuration: configuration)
        // The line goes first, so that whoever sees a record in the journal can flush its line.
        if let line = outcome.line, let output, !output.write(line) {
            outputDrops.increment()
        }
        guard var record = outcome.record else { return }
        record.messageId = delivery.properties.messageID
        if journalQueue.append(record) {
            journalFullWarned.store(false, ordering: .relaxed)
        } else {
            journalDrops.increment()
            if !journalFullWarned.exchange(true, ordering: .relaxed) {
                logger.warning(
                    "the journal cannot keep up; dropping records",
                    metadata: ["events.queue_capacity": "\(Self.journalQueueCapacity)", "amqp.routing_key": "\(delivery.routingKey)"])
            }
        }
    }

    private func writeJournal(from pending: BatchQueue<JournalRecord>, to journal: EventJournal) async {
        while true {
            let batch = await pending.takeAll()
            if batch.isEmpty { return }
            do {
                // Not cancellable: records taken from the queue are stored even while shutting down.
                try await Task { try await journal.insert(batch) }.value
            } catch {
                journalDrops.increment(by: batch.count)
                logger.error("could not journal records", metadata: ["events.records": "\(batch.count)", "error": "\(error)"])
            }
        }
    }

    private func enforceRetention(on journal: EventJournal) async {
        do {
            let removed = try await journal.enforceRetention(
                olderThan: currentMilliseconds() - configuration.maximumAgeMilliseconds, maximumEntries: configuration.maximumEntries)
            purged.increment(by: removed)
            if removed > 0 {
                logger.debug("removed old journal entries", metadata: ["events.removed": "\(removed)"])
            }
        } catch {
            logger.warning("could not apply the journal's retention", metadata: ["error": "\(error)"])
        }
    }

    private func currentJournal() throws -> EventJournal {
        guard let journal = running.withLock({ $0.journal }) else {
            throw ErrorEvent(name: "ServiceUnavailableError", message: "the events journal is not open", status: 503)
        }
        return journal
    }

}
