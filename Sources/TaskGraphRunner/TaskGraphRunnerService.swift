import BusCore
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// TaskGraphRunner: the task and graph library, graph instances, the eleven
/// `on.task-graph-runner` RPCs, and a built-in task runner. Put it after the `MessageBus` (and
/// with a `SchedulerService` somewhere on the bus) in a `ServiceGroup`.
public final class TaskGraphRunnerService: Service, Sendable {
    public struct Configuration: Sendable {
        /// Where definitions and graphs live: a SQLite file private to this process (`:memory:`
        /// keeps nothing), or a `postgres://` URL of a database that several instances share
        /// (see ``GraphStoreLocation``).
        public var database: String
        /// Whether this process also runs tasks (built-in jobs).
        public var runsTasks: Bool
        public var taskConcurrency: Int
        /// How long finished tasks stay in the journal that keeps a redelivered `run` from
        /// running a task again (`RACKBUS_TASKGRAPH_JOURNAL_DAYS`).
        public var finishedTaskRetention: Duration
        /// How often older ones are forgotten.
        public var retentionInterval: Duration

        public init(
            database: String = ".rackbus/taskgraph.sqlite", runsTasks: Bool = true, taskConcurrency: Int = 64,
            finishedTaskRetention: Duration = .seconds(7 * 86_400), retentionInterval: Duration = .seconds(3_600)
        ) {
            self.database = database
            self.runsTasks = runsTasks
            self.taskConcurrency = taskConcurrency
            self.finishedTaskRetention = finishedTaskRetention
            self.retentionInterval = retentionInterval
        }
    }

    public static let finishedQueueName = "rackbus.task-graph-runner.finished"

    private let bus: MessageBus
    private let configuration: Configuration
    private let logger: Logger
    private let readiness = OneShotSignal()
    private let faults: EngineFaults?
    private let metrics: WorkflowMetrics

    public convenience init(
        bus: MessageBus, configuration: Configuration = Configuration(), logger: Logger = Logger(label: "rackbus.taskgraph")
    ) {
        self.init(bus: bus, configuration: configuration, logger: logger, faults: nil)
    }

    /// With `faults`, a test makes the engine's writes fail on purpose; with `metricsFactory`, it
    /// reads the metrics.
    init(
        bus: MessageBus, configuration: Configuration, logger: Logger, faults: EngineFaults?,
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.bus = bus
        self.configuration = configuration
        self.logger = logger
        self.faults = faults
        self.metrics = WorkflowMetrics(factory: metricsFactory)
    }

    public func run() async throws {
        let location = try GraphStoreLocation(configuration.database)
        switch location {
        case .sqlite(let path):
            try await serve(store: try await SQLiteGraphStore.open(path: path))
        case .postgres(let postgres):
            let store = PostgresGraphStore(location: postgres, logger: logger)
            // The pool runs in a task of its own, not in a child task: cancelling this service
            // would cancel a child at once, and the pool would close connections under the
            // transactions that the ending work (a finished task, a report) still runs, which
            // can leave that work waiting for ever. The pool closes once that work has ended.
            let pool = Task { await store.run() }
            do {
                try await store.migrate()
                logger.notice("task graphs are stored in PostgreSQL", metadata: ["taskgraph.database": "\(postgres.redacted)"])
                try await serve(store: store)
            } catch {
                pool.cancel()
                await pool.value
                throw error
            }
            pool.cancel()
            await pool.value
        }
    }

    private func serve(store: any GraphStore) async throws {
        let engine = try await GraphEngine(bus: bus, store: store, logger: logger, faults: faults, metrics: metrics)
        let servers = try await rpcServers(engine)
        // Reports are taken from a durable queue and acknowledged once stored, and once the
        // Schedulers were told that the task ended: none is lost to a crash, and one whose write
        // fails goes back to the queue.
        let reports = try await bus.workQueue(
            named: "\(bus.configuration.exchangePrefix).\(Self.finishedQueueName)", bindings: [(.events, "task.finished.*")], prefetch: 256,
            as: TaskReport.self)
        let ends = TaskEndNotices(bus: bus, logger: logger)
        let runner =
            configuration.runsTasks
            ? TaskRunner(bus: bus, concurrency: configuration.taskConcurrency, journal: store, logger: logger, metrics: metrics) : nil
        // `schedule` requests wait in the Schedulers' queue even while no Scheduler is up.
        try await bus.declareWorkQueue(
            named: WorkflowQueues.name(WorkflowQueues.scheduler, prefix: bus.configuration.exchangePrefix),
            bindings: WorkflowQueues.schedulerBindings, arguments: WorkflowQueues.schedulerArguments)
        readiness.signal()
        try await withThrowingDiscardingTaskGroup { group in
            for server in servers {
                group.addTask { await server.run() }
            }
            // Sends what a crashed instance (or a failed send) left in the outbox.
            group.addTask { await engine.sweepOutbox() }
            group.addTask { await engine.forgetSentMessages() }
            group.addTask { await self.forgetOldFinishedTasks(in: store) }
            group.addTask { await ends.run() }
            group.addTask {
                // Reports are handled side by side (the prefetch bounds how many); the engine
                // keeps each graph consistent. On SQLite without a task each: the store decides
                // at once and the rest follows its commit, on its thread.
                await withDiscardingTaskGroup { handlers in
                    for await report in reports {
                        if engine.handlesReportsWithoutTasks {
                            self.handleWithoutTask(report, engine: engine, ends: ends)
                        } else {
                            handlers.addTask { await self.handle(report, engine: engine, ends: ends) }
                        }
                    }
                }
            }
            if let runner {
                group.addTask { try await runner.run() }
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }
    }

    /// Stores a report's effect, then has its task's end sent to the Schedulers; the report is
    /// settled once that is sent. Awaited in a task of its own, which shutdown waits for.
    private func handle(_ report: Delivery<TaskReport>, engine: GraphEngine, ends: TaskEndNotices) async {
        switch report.message {
        case .finished(let finished): settle(report, of: finished, stored: await engine.taskFinished(finished), ends: ends)
        case .unreadable(let taskID, let error): settleUnreadable(report, taskID: taskID, error: error, ends: ends)
        }
    }

    /// ``handle(_:engine:ends:)`` without a task: the rest follows the store's commit, on its thread.
    private func handleWithoutTask(_ report: Delivery<TaskReport>, engine: GraphEngine, ends: TaskEndNotices) {
        switch report.message {
        case .finished(let finished):
            engine.taskFinished(finished) { stored in self.settle(report, of: finished, stored: stored, ends: ends) }
        case .unreadable(let taskID, let error): settleUnreadable(report, taskID: taskID, error: error, ends: ends)
        }
    }

    private func settle(_ report: Delivery<TaskReport>, of finished: TaskFinished, stored: Bool, ends: TaskEndNotices) {
        guard stored else {
            // Not stored: back to the broker, after a pause so a failing store is not hammered.
            Task {
                try? await Task.sleep(for: .milliseconds(200))
                report.reject(requeue: true)
            }
            return
        }
        ends.add(finished.taskId) { sent in sent ? report.ack() : report.reject(requeue: true) }
    }

    private func settleUnreadable(_ report: Delivery<TaskReport>, taskID: String, error: String, ends: TaskEndNotices) {
        logger.error("a task report could not be read; it is dead-lettered", metadata: ["task.id": "\(taskID)", "error": "\(error)"])
        // Its task ended all the same: the Schedulers free its slot.
        ends.add(taskID) { sent in report.reject(requeue: !sent) }
    }

    /// Keeps the finished-task journal to ``Configuration/finishedTaskRetention``: at start, then
    /// every ``Configuration/retentionInterval``, until cancelled. (Instances sharing a store all
    /// do it; a delete is the same from any of them.)
    private func forgetOldFinishedTasks(in store: any GraphStore) async {
        while !Task.isCancelled {
            do {
                let cutoff = Date().addingTimeInterval(-configuration.finishedTaskRetention.secondsValue)
                let forgotten = try await store.forgetFinishedTasks(before: cutoff)
                if forgotten > 0 {
                    logger.info("forgot finished tasks past their retention", metadata: ["taskgraph.forgotten": "\(forgotten)"])
                }
            } catch  where !Task.isCancelled {
                logger.warning("could not forget old finished tasks", metadata: ["error": "\(error)"])
            } catch {}
            try? await Task.sleep(for: configuration.retentionInterval)
        }
    }

    /// Returns once the RPCs are consuming (also when the waiting task is cancelled).
    public func waitUntilReady() async {
        await readiness.wait()
    }

    private func rpcServers(_ engine: GraphEngine) async throws -> [RPCServer] {
        [
            try await bus.server(for: GetTaskGraphLibrary.self) { request, _ in try await engine.graphLibrary(filter: request.filter) },
            try await bus.server(for: GetTaskLibrary.self) { request, _ in try await engine.taskLibrary(filter: request.filter) },
            try await bus.server(for: GetActiveTaskGraph.self) { request, _ in try await engine.activeGraph(request.filter) },
            try await bus.server(for: GetActiveTaskGraphs.self) { request, _ in try await engine.activeGraphs(request.filter) },
            try await bus.server(for: DefineTaskGraph.self) { request, _ in try await engine.define(request.definition) },
            try await bus.server(for: DefineTask.self) { request, _ in try await engine.define(request.definition) },
            try await bus.server(for: RunTaskGraph.self) { request, _ in
                try await engine.run(
                    name: request.name, options: request.options ?? [:], target: request.target, idempotencyKey: request.idempotencyKey)
            },
            try await bus.server(for: CancelTaskGraph.self) { request, _ in try await engine.cancel(request.filter) },
            try await bus.server(for: PauseTaskGraph.self) { request, _ in try await engine.pause(request.filter) },
            try await bus.server(for: ResumeTaskGraph.self) { request, _ in try await engine.resume(request.filter) },
            try await bus.server(for: GetTaskGraphProperties.self) { request, _ in try await engine.properties(request.filter) },
        ]
    }
}
