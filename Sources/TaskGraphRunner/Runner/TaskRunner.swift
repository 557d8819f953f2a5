import BusCore
import Foundation
import Logging
import Synchronization

/// Remembers which tasks have finished, durably.
public protocol FinishedTaskJournal: Sendable {
    /// Stores `body`, the report as JSON: the bytes that are then published.
    func recordFinished(taskId: String, body: [UInt8]) async throws
    func finishedReport(taskId: String) async throws -> TaskFinished?
}

extension GraphStore: FinishedTaskJournal {}

/// Runs tasks: takes `run.<taskId>` from a queue shared by every task runner (so each task runs
/// once), runs the job if this runner has it, and reports `task.finished.<taskId>`. A
/// `cancel.<taskId>` (every runner hears it) stops the job; `TaskTimeoutError` ends it in
/// `timeout`. Jobs this runner does not have are left to external workers (see the README).
public final class TaskRunner: Sendable {
    /// The shared queue of the built-in runners.
    public static let queueName = WorkflowQueues.taskRunner

    private let bus: MessageBus
    private let logger: Logger
    private let jobs: [String: any Job]
    /// Where finished tasks are recorded: a redelivered `run` for one is answered, not run again.
    private let journal: (any FinishedTaskJournal)?
    private let concurrency: Int

    public init(
        bus: MessageBus, jobs: [any Job] = BuiltInJobs.all, concurrency: Int = 64, journal: (any FinishedTaskJournal)? = nil, logger: Logger
    ) {
        self.bus = bus
        self.logger = logger
        self.concurrency = concurrency
        self.journal = journal
        self.jobs = Dictionary(jobs.map { (type(of: $0).name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public func run() async throws {
        let runs = try await bus.workQueue(
            named: WorkflowQueues.name(Self.queueName, prefix: bus.configuration.exchangePrefix),
            bindings: WorkflowQueues.taskRunnerBindings,
            prefetch: concurrency,
            as: RunMessage.self)
        let cancels = try await bus.subscribe(to: .task, patterns: ["cancel.*"], as: TaskCancellation.self)
        await withDiscardingTaskGroup { supervision in
            supervision.addTask { await self.enforceTimeouts() }
            await runTasks(runs, cancels: cancels)
            // Every job has ended: nothing is left to time out.
            supervision.cancelAll()
        }
    }

    private func runTasks(_ runs: Subscription<RunMessage>, cancels: Subscription<TaskCancellation>) async {
        await withDiscardingTaskGroup { group in
            group.addTask {
                for await cancel in cancels { self.cancel(cancel.message) }
            }
            for await delivery in runs {
                let spec: TaskSpec
                switch delivery.message {
                case .runnable(let runnable):
                    spec = runnable
                case .malformed(let report):
                    // Fail the task rather than drop it, so its graph and its Scheduler slot move on.
                    logger.error(
                        "a run message could not be read", metadata: ["task.id": "\(report.taskId)", "error": "\(report.error ?? "")"])
                    await self.report(report)
                    delivery.ack()
                    continue
                }
                guard let job = jobs[spec.job] else {
                    // Not ours: an external worker that has this job takes it from its own queue.
                    delivery.ack()
                    continue
                }
                // Claimed here, synchronously, before the job's task exists: a duplicate delivery
                // handled right after this one finds the claim and starts nothing.
                switch claims.withLock({ $0.claims.claim(spec.taskId) }) {
                case .running:
                    // A duplicate hand-over (a redelivery beside a resumed graph's): it already runs here.
                    delivery.ack()
                    continue
                case .finished:
                    if let done = try? await journal?.finishedReport(taskId: spec.taskId) { await report(done) }
                    delivery.ack()
                    continue
                case .start:
                    break
                }
                let done: TaskFinished?
                do {
                    done = try await journal?.finishedReport(taskId: spec.taskId)
                } catch {
                    // Unknown whether it ran: neither run it nor drop it; the broker hands it back soon.
                    logger.error("could not read the finished-task journal", metadata: ["task.id": "\(spec.taskId)", "error": "\(error)"])
                    claims.withLock { $0.claims.release(spec.taskId) }
                    group.addTask {
                        try? await Task.sleep(for: .milliseconds(500))
                        delivery.reject(requeue: true)
                    }
                    continue
                }
                if let done {
                    finishClaim(spec.taskId)
                    await report(done)
                    delivery.ack()
                    continue
                }
                group.addTask {
                    await self.execute(spec, job: job)
                    delivery.ack()
                }
            }
        }
    }

    private func execute(_ spec: TaskSpec, job: any Job) async {
        let context = JobContext(task: spec, bus: bus, logger: logger)
        let work = Task<Result<[String: JSONValue], any Error>, Never> {
            do { return .success(try await job.run(context)) } catch { return .failure(error) }
        }
        // Cancelling the job's task is how both cancel and timeout reach the job.
        registerCanceller(for: spec.taskId, timeoutMs: spec.timeoutMs, cancel: { work.cancel() })
        logger.debug("task started", metadata: ["task.id": "\(spec.taskId)", "task.job": "\(spec.job)"])
        let servers: [RPCServer]
        do {
            servers = try await nodeServers(for: spec)
        } catch {
            logger.warning("could not answer for the node", metadata: ["task.id": "\(spec.taskId)", "error": "\(error)"])
            servers = []
        }
        let outcome = await withTaskGroup(of: Void.self) { group in
            for server in servers { group.addTask { await server.run() } }
            // The job runs in a task of its own so that one cancel reaches it; shutdown reaches it too.
            let outcome = await withTaskCancellationHandler {
                await work.value
            } onCancel: {
                work.cancel()
            }
            // An ended task stops answering for its node at once: no stale answers.
            for server in servers { server.cancel() }
            group.cancelAll()
            return outcome
        }
        let reason = takeCancelReason(spec.taskId)
        let result: TaskFinished
        switch outcome {
        case .success(let additions):
            if let reason {
                result = finishedReport(spec, state: reason == TaskCancellation.timeoutErrorName ? .timeout : .cancelled, error: reason)
            } else {
                result = finishedReport(spec, state: .succeeded, error: nil, context: additions)
            }
        case .failure(let error):
            if let reason {
                result = finishedReport(spec, state: reason == TaskCancellation.timeoutErrorName ? .timeout : .cancelled, error: reason)
            } else if error is CancellationError {
                result = finishedReport(spec, state: .cancelled, error: "TaskCancellationError")
            } else {
                result = finishedReport(spec, state: .failed, error: "\(error)")
            }
        }
        // Encoded once: the journal stores the very bytes that are published.
        let body: [UInt8]
        do {
            body = try WireFormat.encode(result)
        } catch {
            logger.error("could not encode a finished task", metadata: ["task.id": "\(spec.taskId)", "error": "\(error)"])
            finishClaim(spec.taskId)
            return
        }
        do {
            try await journal?.recordFinished(taskId: result.taskId, body: body)
        } catch {
            logger.error("could not record a finished task", metadata: ["task.id": "\(spec.taskId)", "error": "\(error)"])
        }
        // Only now: until the journal has it, the claim keeps a duplicate from starting it again.
        finishClaim(spec.taskId)
        await report(taskId: result.taskId, body: body)
    }

    private func finishedReport(_ spec: TaskSpec, state: TaskState, error: String?, context: [String: JSONValue]? = nil) -> TaskFinished {
        TaskFinished(
            taskId: spec.taskId, taskName: spec.taskName, label: spec.label, graphId: spec.graphId, graphName: spec.graphName, state: state,
            error: error, context: context)
    }

    private func report(_ report: TaskFinished) async {
        guard let body = try? WireFormat.encode(report) else { return }
        await self.report(taskId: report.taskId, body: body)
    }

    private func report(taskId: String, body: [UInt8]) async {
        do {
            try await bus.publishRawConfirmed(
                body: body, toExchangeNamed: bus.name(of: .events), routingKey: WorkflowKeys.taskFinished(taskId),
                type: TaskFinished.payloadType, persistent: true)
        } catch {
            logger.error("could not report a finished task", metadata: ["task.id": "\(taskId)", "error": "\(error)"])
        }
    }

    // MARK: Node-scoped RPCs

    /// While a task runs against a node, it answers that node's RPCs: `activeTaskExists` and
    /// `requestProperties` always, `requestProfile`/`getBootProfile` when it has a `profile`
    /// option, `requestCommands` when it has `commands`.
    private func nodeServers(for spec: TaskSpec) async throws -> [RPCServer] {
        guard let node = spec.nodeId, !node.isEmpty else { return [] }
        let active = ActiveTask(
            taskId: spec.taskId, graphId: spec.graphId, graphName: spec.graphName, taskName: spec.taskName, label: spec.label, job: spec.job
        )
        let options = spec.options
        var servers = [
            try await bus.server(for: ActiveTaskExists.self, routingKey: ActiveTaskExists(nodeId: node).routingKey) { _, _ in active },
            try await bus.server(for: RequestProperties.self, routingKey: RequestProperties(nodeId: node).routingKey) { _, _ in options },
        ]
        if let profile = options["profile"]?.stringValue {
            servers.append(
                try await bus.server(for: RequestProfile.self, routingKey: RequestProfile(nodeId: node).routingKey) { _, _ in profile })
            servers.append(
                try await bus.server(for: GetBootProfile.self, routingKey: GetBootProfile(nodeId: node).routingKey) { _, _ in profile })
        }
        if let commands = options["commands"] {
            let reply = RequestCommands.Commands(identifier: node, tasks: LinuxCommandsJob.commandList(commands))
            servers.append(
                try await bus.server(for: RequestCommands.self, routingKey: RequestCommands(nodeId: node).routingKey) { _, _ in reply })
        }
        return servers
    }

    // MARK: Cancellation

    private struct Running {
        /// Nil between the claim and the job's start; a cancel that arrives then is kept as `reason`.
        var cancel: (@Sendable () -> Void)?
        var reason: String?
    }

    private struct RunningTasks {
        var claims = TaskClaims()
        var tasks: [String: Running] = [:]
        var deadlines = TaskDeadlines()
    }

    private let claims = Mutex(RunningTasks())

    private func registerCanceller(for taskID: String, timeoutMs: Int, cancel: @escaping @Sendable () -> Void) {
        let cancelledEarly = claims.withLock { running -> Bool in
            running.tasks[taskID, default: Running(cancel: nil, reason: nil)].cancel = cancel
            running.deadlines.watch(taskID, timeoutMs: timeoutMs, from: .now)
            return running.tasks[taskID]?.reason != nil
        }
        // A cancel that came between the claim and now still reaches the job.
        if cancelledEarly { cancel() }
    }

    /// The Scheduler cancels a task whose `_taskTimeout` passes, but a Scheduler that restarts
    /// forgets what it was timing. The runner keeps its own watch, so a timeout holds anyway.
    private func enforceTimeouts() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(100))
            let overdue = claims.withLock { running -> [(String, @Sendable () -> Void)] in
                running.deadlines.takeExpired(now: .now).compactMap { id in
                    // A task already cancelled for another reason keeps that reason.
                    guard let task = running.tasks[id], task.reason == nil, let cancel = task.cancel else { return nil }
                    running.tasks[id]?.reason = TaskCancellation.timeoutErrorName
                    return (id, cancel)
                }
            }
            for (taskID, cancel) in overdue {
                logger.warning("task timed out", metadata: ["task.id": "\(taskID)"])
                cancel()
            }
        }
    }

    /// The task is done with (recorded, or found in the journal): a later delivery of it is answered, not run.
    private func finishClaim(_ taskID: String) {
        claims.withLock { running in
            running.claims.finish(taskID)
            running.tasks[taskID] = nil
            running.deadlines.forget(taskID)
        }
    }

    private func takeCancelReason(_ taskID: String) -> String? {
        claims.withLock { running in
            running.deadlines.forget(taskID)
            return running.tasks.removeValue(forKey: taskID)?.reason
        }
    }

    private func cancel(_ request: TaskCancellation) {
        let cancel = claims.withLock { running -> (@Sendable () -> Void)? in
            // A claimed task whose job has not started yet keeps the reason for when it does.
            if running.tasks[request.taskId] == nil, running.claims.isRunning(request.taskId) {
                running.tasks[request.taskId] = Running(cancel: nil, reason: nil)
            }
            guard let task = running.tasks[request.taskId] else { return nil }
            // The first reason stands: a timeout stays a timeout when the Scheduler's cancel follows.
            if task.reason == nil {
                running.tasks[request.taskId]?.reason = request.errName ?? "TaskCancellationError"
            }
            return task.cancel
        }
        cancel?()
    }
}

/// A `run.<taskId>` body: a ``TaskSpec``, or, when it is not one but names its task and graph
/// (and a built-in job, or none), the failure to report for it. Anything less is left
/// to the bus, which rejects it.
enum RunMessage: Decodable, Sendable {
    case runnable(TaskSpec)
    case malformed(TaskFinished)

    private enum CodingKeys: String, CodingKey {
        case taskId, graphId, graphName, label, taskName, job
    }

    init(from decoder: any Decoder) throws {
        do {
            self = .runnable(try TaskSpec(from: decoder))
        } catch let error as DecodingError {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let job = try? container.decode(String.self, forKey: .job)
            // Another runner's job (an external worker's): not this runner's to fail.
            if let job, !BuiltInJobs.all.contains(where: { type(of: $0).name == job }) { throw error }
            func text(_ key: CodingKeys) -> String { (try? container.decode(String.self, forKey: key)) ?? "" }
            self = .malformed(
                TaskFinished(
                    taskId: try container.decode(String.self, forKey: .taskId), taskName: text(.taskName), label: text(.label),
                    graphId: try container.decode(String.self, forKey: .graphId), graphName: text(.graphName), state: .failed,
                    error: "MalformedRunMessage: \(RunMessage.describe(error))"))
        }
    }

    /// The decoding error in one line: what was wrong, and where.
    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String { context.codingPath.map(\.stringValue).joined(separator: ".") }
        switch error {
        case .keyNotFound(let key, let context):
            return "missing \(([path(context)].filter { !$0.isEmpty } + [key.stringValue]).joined(separator: "."))"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return "bad value at \(path(context)): \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}
