import BusCore
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import WorkflowProtocol

/// The Scheduler: takes `schedule` requests from a durable queue that its replicas share, one
/// active at a time (the others stand by: `x-single-active-consumer`), runs at
/// most `concurrency` tasks at once, hands each to the task runners with `run.<taskId>`, and
/// cancels a task whose `_taskTimeout` passes (`cancel.<taskId>` with `TaskTimeoutError`).
///
/// It learns that tasks ended from the TaskGraphRunners (`tasks.ended` on the scheduler exchange,
/// sent once they have stored each end, a batch of a few milliseconds at a time), not from a copy
/// of every `task.finished` report. A spare watches the active one's hand-overs and the tasks'
/// ends until the broker makes it active, so it takes over knowing which tasks run
/// (``SchedulingState``).
///
/// A `schedule` request is acknowledged only once its `run` is confirmed by the broker, so a
/// Scheduler killed in the middle loses nothing: the broker redelivers what it had not handed on.
public final class SchedulerService: Service, Sendable {
    public static let queueName = WorkflowQueues.scheduler
    /// How many task ids it remembers (handed on, and ended) to drop duplicates.
    static let rememberedTaskIDs = 100_000

    private let bus: MessageBus
    private let logger: Logger
    private let state: Mutex<SchedulingState<Delivery<ScheduleRequest>>>
    private let readiness = OneShotSignal()
    private let metrics: SchedulerMetrics

    public convenience init(bus: MessageBus, concurrency: Int = 64, logger: Logger = Logger(label: "rackbus.scheduler")) {
        self.init(bus: bus, concurrency: concurrency, logger: logger, metricsFactory: MetricsSystem.factory)
    }

    /// With `metricsFactory`, a test reads the metrics.
    init(bus: MessageBus, concurrency: Int, logger: Logger, metricsFactory: any MetricsFactory) {
        self.bus = bus
        self.logger = logger
        self.metrics = SchedulerMetrics(factory: metricsFactory)
        self.state = Mutex(SchedulingState(concurrency: concurrency, remembered: Self.rememberedTaskIDs))
    }

    /// Returns once it consumes its queue (also when the waiting task is cancelled).
    public func waitUntilReady() async {
        await readiness.wait()
    }

    /// Whether the broker has made this Scheduler the active one (it has had a request).
    public var isActive: Bool { state.withLock { $0.role == .active } }

    /// How many tasks may run at once (changeable while running).
    public var concurrency: Int {
        get { state.withLock { $0.concurrency } }
        set {
            state.withLock { $0.concurrency = max(1, newValue) }
            dispatchReady()
        }
    }

    /// The tasks it counts as running: its own hand-overs, or, standing by, the active one's.
    public var runningCount: Int { state.withLock { $0.running.count } }

    /// How many handed-on task ids it remembers (bounded by ``rememberedTaskIDs``).
    public var rememberedCount: Int { state.withLock { $0.knownCount } }

    public func run() async throws {
        // A large prefetch: waiting requests stay unacknowledged (safe) without stalling delivery.
        let prefix = bus.configuration.exchangePrefix
        // Hand-overs wait in the runners' queue even while no runner is up.
        try await bus.declareWorkQueue(
            named: WorkflowQueues.name(WorkflowQueues.taskRunner, prefix: prefix), bindings: WorkflowQueues.taskRunnerBindings)
        // Task ends come from the TaskGraphRunners once they have stored them, a batch at a time.
        let ends = try await bus.subscribe(to: .scheduler, patterns: [WorkflowKeys.tasksEnded], as: TasksEnded.self)
        // The hand-overs, watched until this Scheduler becomes active; before it consumes the
        // queue, so that none is missed if it stands by from the start.
        let handOvers = try await bus.subscribe(to: .task, patterns: ["run.*"], as: ScheduleRequest.self)
        let requests = try await bus.workQueue(
            named: WorkflowQueues.name(Self.queueName, prefix: prefix), bindings: WorkflowQueues.schedulerBindings,
            prefetch: 10_000, arguments: WorkflowQueues.schedulerArguments,
            as: ScheduleRequest.self)
        readiness.signal()
        await withDiscardingTaskGroup { group in
            group.addTask {
                for await request in requests {
                    let spec = request.message
                    let becameActive = self.state.withLock {
                        $0.received(request, taskId: spec.taskId, timeoutMs: spec.timeoutMs)
                    }
                    if becameActive {
                        self.logger.notice("this Scheduler is now the active one", metadata: ["scheduler.running": "\(self.runningCount)"])
                        handOvers.cancel()
                    }
                    self.dispatchReady()
                }
            }
            group.addTask {
                for await notice in ends {
                    let freed = self.state.withLock { state in
                        notice.message.taskIds.reduce(false) { freed, taskID in state.taskEnded(taskID) || freed }
                    }
                    if freed { self.dispatchReady() }
                }
            }
            group.addTask {
                for await handOver in handOvers {
                    self.state.withLock {
                        $0.observedHandOver(taskId: handOver.message.taskId, timeoutMs: handOver.message.timeoutMs, now: .now)
                    }
                }
            }
            group.addTask { await self.timeoutLoop() }
            try? await gracefulShutdown()
            group.cancelAll()
        }
    }

    /// Hands on every request that may go now, from whichever loop freed a slot or brought a
    /// request: a hand-over only queues a publish, so no task of its own is needed. Duplicate
    /// requests (a TaskGraphRunner resuming after a restart) are sent on without taking a slot.
    private func dispatchReady() {
        while let next = state.withLock({ $0.takeNext(now: .now) }) {
            dispatch(next)
        }
    }

    /// Forwards the `schedule` body untouched as `run.<taskId>`: the runners read the whole
    /// ``TaskSpec``, the Scheduler only what it decides on. The request is acknowledged once the
    /// broker confirms the hand-over, and goes back to the queue if it refuses it; the bus does
    /// both when the confirm comes, so hand-overs go out side by side without a task each.
    private func dispatch(_ handOver: SchedulingState<Delivery<ScheduleRequest>>.HandOver) {
        let request = handOver.request
        let (taskID, counts) = (request.message.taskId, handOver.counts)
        bus.publishRawConfirmed(
            body: request.body, toExchangeNamed: bus.name(of: .task), routingKey: WorkflowKeys.run(taskID),
            type: request.properties.type ?? TaskSpec.payloadType, persistent: true,
            headers: WorkflowHeaders.marking(repeated: !handOver.counts || WorkflowHeaders.isRepeated(request)), acknowledging: request
        ) { result in
            guard case .failure(let error) = result else { return }
            self.logger.error(
                "could not hand a task to the runners; it will be redelivered", metadata: ["task.id": "\(taskID)", "error": "\(error)"])
            // A duplicate's slot belongs to the hand-over that counted it.
            if counts { self.state.withLock { $0.handOverFailed(taskID) } }
        }
    }

    private func timeoutLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(100))
            let (expired, running, waiting, active) = state.withLock {
                ($0.takeExpired(now: .now), $0.running.count, $0.waitingCount, $0.role == .active)
            }
            metrics.record(running: running, waiting: waiting, active: active)
            if !expired.isEmpty { metrics.timeouts.increment(by: Int64(expired.count)) }
            for taskID in expired {
                logger.warning("task timed out", metadata: ["task.id": "\(taskID)"])
                try? await bus.publishConfirmed(
                    TaskCancellation(taskId: taskID, errName: TaskCancellation.timeoutErrorName, errMessage: "task timed out"), to: .task,
                    routingKey: WorkflowKeys.cancel(taskID), persistent: true)
            }
        }
    }
}

/// What the Scheduler reads of a `schedule` request (a ``TaskSpec``): its task and its time
/// limit. It still refuses a request that lacks any of TaskSpec's required fields, so what it
/// hands on is what the runners can run; building the options and context is left to them.
struct ScheduleRequest: DirectJSONObjectDecodable, Sendable {
    var taskId: String
    /// Milliseconds the task may run; 0 or less means no limit.
    var timeoutMs: Int

    private enum CodingKeys: String, CodingKey {
        case taskId, timeoutMs, graphId, graphName, label, taskName, job, options, context
    }

    /// The other strings a TaskSpec must have, and the members it must have at all.
    private static let requiredStrings: [CodingKeys] = [.graphId, .graphName, .label, .taskName, .job]
    private static let requiredMembers: [CodingKeys] = [.options, .context]

    /// The same checks as `init(from:)`, on a parsed body.
    init(members json: JSONMembers) throws(JSONMembers.Mismatch) {
        taskId = try json.string(CodingKeys.taskId.stringValue)
        timeoutMs = try json.int(CodingKeys.timeoutMs.stringValue)
        for key in Self.requiredStrings { _ = try json.string(key.stringValue) }
        for key in Self.requiredMembers where !json.contains(key.stringValue) { throw JSONMembers.Mismatch() }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        taskId = try container.decode(String.self, forKey: .taskId)
        timeoutMs = try container.decode(Int.self, forKey: .timeoutMs)
        for key in Self.requiredStrings {
            _ = try container.decode(String.self, forKey: key)
        }
        for key in Self.requiredMembers where !container.contains(key) {
            throw DecodingError.keyNotFound(
                key, .init(codingPath: container.codingPath, debugDescription: "a TaskSpec has \(key.stringValue)"))
        }
    }
}

/// The Scheduler's swift-metrics instruments, sampled every 100 ms (off the hand-over path).
struct SchedulerMetrics: Sendable {
    let running: Gauge
    let waiting: Gauge
    let active: Gauge
    let timeouts: Counter

    init(factory: any MetricsFactory) {
        running = Gauge(label: "rackbus_scheduler_running_tasks", factory: factory)
        waiting = Gauge(label: "rackbus_scheduler_waiting_requests", factory: factory)
        active = Gauge(label: "rackbus_scheduler_active", factory: factory)
        timeouts = Counter(label: "rackbus_scheduler_timeouts_total", factory: factory)
    }

    func record(running: Int, waiting: Int, active: Bool) {
        self.running.record(running)
        self.waiting.record(waiting)
        self.active.record(active ? 1 : 0)
    }
}
