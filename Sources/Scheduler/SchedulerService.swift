import BusCore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import WorkflowProtocol

/// The Scheduler: takes `schedule` requests from a durable queue that its replicas share, one
/// active at a time (the others stand by: `x-single-active-consumer`), runs at
/// most `concurrency` tasks at once, hands each to the task runners with `run.<taskId>`, and
/// cancels a task whose `_taskTimeout` passes (`cancel.<taskId>` with `TaskTimeoutError`).
///
/// A `schedule` request is acknowledged only once its `run` is confirmed by the broker, so a
/// Scheduler killed in the middle loses nothing: the broker redelivers what it had not handed on.
public final class SchedulerService: Service, Sendable {
    public static let queueName = WorkflowQueues.scheduler
    /// How many handed-on task ids it remembers to drop duplicate requests.
    static let rememberedTaskIDs = 100_000

    private struct State {
        var concurrency: Int
        var waiting: [Delivery<ScheduleRequest>] = []
        var running: Set<String> = []
        var deadlines = TaskDeadlines()
        var known = RecentTaskIDs(capacity: SchedulerService.rememberedTaskIDs)
    }

    private let bus: MessageBus
    private let logger: Logger
    private let state: Mutex<State>
    private let wake: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation

    public init(bus: MessageBus, concurrency: Int = 64, logger: Logger = Logger(label: "rackbus.scheduler")) {
        self.bus = bus
        self.logger = logger
        self.state = Mutex(State(concurrency: max(1, concurrency)))
        (wake, wakeContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// How many tasks may run at once (changeable while running).
    public var concurrency: Int {
        get { state.withLock { $0.concurrency } }
        set {
            state.withLock { $0.concurrency = max(1, newValue) }
            wakeContinuation.yield()
        }
    }

    public var runningCount: Int { state.withLock { $0.running.count } }

    /// How many task ids it remembers (bounded by ``rememberedTaskIDs``).
    public var rememberedCount: Int { state.withLock { $0.known.count } }

    public func run() async throws {
        // A large prefetch: waiting requests stay unacknowledged (safe) without stalling delivery.
        let prefix = bus.configuration.exchangePrefix
        // Hand-overs wait in the runners' queue even while no runner is up.
        try await bus.declareWorkQueue(
            named: WorkflowQueues.name(WorkflowQueues.taskRunner, prefix: prefix), bindings: WorkflowQueues.taskRunnerBindings)
        let requests = try await bus.workQueue(
            named: WorkflowQueues.name(Self.queueName, prefix: prefix), bindings: WorkflowQueues.schedulerBindings,
            prefetch: 10_000, arguments: WorkflowQueues.schedulerArguments,
            as: ScheduleRequest.self)
        // Only the task id matters here: a slot frees up.
        let finished = try await bus.subscribe(to: .events, patterns: ["task.finished.*"], as: FinishedTaskID.self)
        await withDiscardingTaskGroup { group in
            group.addTask {
                for await request in requests {
                    self.state.withLock { $0.waiting.append(request) }
                    self.wakeContinuation.yield()
                }
            }
            group.addTask {
                for await report in finished {
                    let freed = self.state.withLock { state in
                        state.deadlines.forget(report.message.taskId)
                        return state.running.remove(report.message.taskId) != nil
                    }
                    if freed { self.wakeContinuation.yield() }
                }
            }
            group.addTask { await self.dispatchLoop() }
            group.addTask { await self.timeoutLoop() }
            try? await gracefulShutdown()
            group.cancelAll()
        }
    }

    private func dispatchLoop() async {
        // Hand-overs go out side by side: each waits for its own broker confirm.
        await withDiscardingTaskGroup { group in
            for await _ in wake {
                while let next = takeNext() {
                    group.addTask { await self.dispatch(next) }
                }
            }
        }
    }

    /// The next request that may start now, or nil when all slots are taken or none waits.
    private func takeNext() -> Delivery<ScheduleRequest>? {
        state.withLock { state in
            guard state.running.count < state.concurrency, !state.waiting.isEmpty else { return nil }
            let request = state.waiting.removeFirst()
            let spec = request.message
            // Duplicate requests (a TaskGraphRunner resuming after a restart) start nothing new.
            if state.known.contains(spec.taskId) { return request }
            state.known.insert(spec.taskId)
            state.running.insert(spec.taskId)
            state.deadlines.watch(spec.taskId, timeoutMs: spec.timeoutMs, from: .now)
            return request
        }
    }

    /// Forwards the `schedule` body untouched as `run.<taskId>`: the runners read the whole
    /// ``TaskSpec``, the Scheduler only what it decides on.
    private func dispatch(_ request: Delivery<ScheduleRequest>) async {
        let spec = request.message
        do {
            try await bus.publishRawConfirmed(
                body: request.body, toExchangeNamed: bus.name(of: .task), routingKey: WorkflowKeys.run(spec.taskId),
                type: request.properties.type ?? TaskSpec.payloadType, persistent: true)
            request.ack()
        } catch {
            logger.error(
                "could not hand a task to the runners; it will be redelivered",
                metadata: ["task.id": "\(spec.taskId)", "error": "\(error)"])
            state.withLock { state in
                state.running.remove(spec.taskId)
                state.deadlines.forget(spec.taskId)
                state.known.remove(spec.taskId)
            }
            request.reject(requeue: true)
        }
    }

    private func timeoutLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(100))
            let expired = state.withLock { $0.deadlines.takeExpired(now: .now) }
            for taskID in expired {
                logger.warning("task timed out", metadata: ["task.id": "\(taskID)"])
                try? await bus.publishConfirmed(
                    TaskCancellation(taskId: taskID, errName: TaskCancellation.timeoutErrorName, errMessage: "task timed out"), to: .task,
                    routingKey: WorkflowKeys.cancel(taskID), persistent: true)
            }
        }
    }
}

/// What the Scheduler reads of a `task.finished` report (a ``TaskFinished``).
struct FinishedTaskID: Decodable, Sendable {
    var taskId: String
}

/// What the Scheduler reads of a `schedule` request (a ``TaskSpec``): its task and its time
/// limit. It still refuses a request that lacks any of TaskSpec's required fields, so what it
/// hands on is what the runners can run; building the options and context is left to them.
struct ScheduleRequest: Decodable, Sendable {
    var taskId: String
    /// Milliseconds the task may run; 0 or less means no limit.
    var timeoutMs: Int

    private enum CodingKeys: String, CodingKey {
        case taskId, timeoutMs, graphId, graphName, label, taskName, job, options, context
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        taskId = try container.decode(String.self, forKey: .taskId)
        timeoutMs = try container.decode(Int.self, forKey: .timeoutMs)
        for key in [CodingKeys.graphId, .graphName, .label, .taskName, .job] {
            _ = try container.decode(String.self, forKey: key)
        }
        for key in [CodingKeys.options, .context] where !container.contains(key) {
            throw DecodingError.keyNotFound(
                key, .init(codingPath: container.codingPath, debugDescription: "a TaskSpec has \(key.stringValue)"))
        }
    }
}
