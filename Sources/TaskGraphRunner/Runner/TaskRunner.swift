import BusCore
import Foundation
import Logging
import Metrics
import Synchronization

/// Remembers which tasks have finished, durably, and which runner runs which task.
public protocol FinishedTaskJournal: Sendable {
    /// Stores `body`, the report as JSON: the bytes that are then published. Ends `taskId`'s claim.
    func recordFinished(taskId: String, body: [UInt8]) async throws
    func finishedReport(taskId: String) async throws -> TaskFinished?
    /// Claims `taskId` for runner `owner` for `lease`, unless another runner holds an unexpired
    /// claim on it: runners in several processes that share the journal then start each task
    /// once. A runner that dies stops renewing, so its tasks are free again once `lease` passes.
    func claimTask(_ taskId: String, owner: String, lease: Duration) async throws -> Bool
    /// Extends every claim `owner` holds by `lease` from now.
    func renewClaims(owner: String, lease: Duration) async throws
}

extension FinishedTaskJournal {
    /// A journal private to one process: the runner's own claims (``TaskClaims``) suffice.
    public func claimTask(_ taskId: String, owner: String, lease: Duration) async throws -> Bool { true }
    public func renewClaims(owner: String, lease: Duration) async throws {}
}

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
    /// How long each job ran, by job: made once, not per task.
    private let jobDurations: [String: Metrics.Timer]
    /// This runner, as the owner of its claims in a shared journal.
    private let id = UUID().uuidString.lowercased()
    /// How long a claim outlives a runner that stopped renewing it (killed): then another runner
    /// may start the task. Short, so that a killed runner's tasks run again soon.
    static let claimLease = Duration.seconds(6)

    public convenience init(
        bus: MessageBus, jobs: [any Job] = BuiltInJobs.all, concurrency: Int = 64, journal: (any FinishedTaskJournal)? = nil, logger: Logger
    ) {
        self.init(bus: bus, jobs: jobs, concurrency: concurrency, journal: journal, logger: logger, metrics: WorkflowMetrics())
    }

    init(
        bus: MessageBus, jobs: [any Job] = BuiltInJobs.all, concurrency: Int, journal: (any FinishedTaskJournal)?, logger: Logger,
        metrics: WorkflowMetrics
    ) {
        self.bus = bus
        self.logger = logger
        self.concurrency = concurrency
        self.journal = journal
        self.jobs = Dictionary(jobs.map { (type(of: $0).name, $0) }, uniquingKeysWith: { first, _ in first })
        self.jobDurations = Dictionary(uniqueKeysWithValues: self.jobs.keys.map { ($0, metrics.jobDuration($0)) })
    }

    public func run() async throws {
        // Cancels first: no run is taken before this runner hears the cancels that may follow it.
        let cancels = try await bus.subscribe(to: .task, patterns: ["cancel.*"], as: TaskCancellation.self)
        let runs = try await bus.workQueue(
            named: WorkflowQueues.name(Self.queueName, prefix: bus.configuration.exchangePrefix),
            bindings: WorkflowQueues.taskRunnerBindings,
            prefetch: concurrency,
            as: RunMessage.self)
        let nodeServer = try await makeNodeServer()
        await withDiscardingTaskGroup { supervision in
            supervision.addTask { await self.enforceTimeouts() }
            supervision.addTask { await self.renewClaims() }
            supervision.addTask { await nodeServer.run() }
            await runTasks(runs, cancels: cancels, nodeServer: nodeServer)
            // Every job has ended: nothing is left to time out.
            supervision.cancelAll()
        }
    }

    private func runTasks(_ runs: Subscription<RunMessage>, cancels: Subscription<TaskCancellation>, nodeServer: RPCServer) async {
        // Jobs run in tasks of their own (``start(_:job:acknowledging:nodeServer:)``): a runner
        // that is stopped stops them, as it would stop child tasks.
        await withTaskCancellationHandler {
            await takeRuns(runs, cancels: cancels, nodeServer: nodeServer)
            // No more runs: the jobs under way end first (each leaves `jobsUnderWay` as it ends).
            while let next = jobsUnderWay.withLock({ $0.values.first }) { await next.value }
        } onCancel: {
            for task in jobsUnderWay.withLock({ Array($0.values) }) { task.cancel() }
        }
    }

    private func takeRuns(_ runs: Subscription<RunMessage>, cancels: Subscription<TaskCancellation>, nodeServer: RPCServer) async {
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
                    self.report(report, acknowledging: delivery)
                    continue
                }
                guard let job = jobs[spec.job] else {
                    // Not ours: an external worker that has this job takes it from its own queue.
                    delivery.ack()
                    continue
                }
                // Claimed here, synchronously, before the job's task exists: a duplicate delivery
                // handled right after this one finds the claim and starts nothing.
                // A cancel that came before the run is kept, and reaches the job as soon as it starts.
                let claim = claims.withLock { running in
                    let decision = running.claims.claim(spec.taskId)
                    if decision == .start, let reason = running.claims.takeEarlyCancellation(spec.taskId) {
                        running.tasks[spec.taskId] = Running(cancel: nil, reason: reason)
                    }
                    return decision
                }
                switch claim {
                case .running:
                    // A duplicate hand-over (a redelivery beside a resumed graph's): it already runs here.
                    delivery.ack()
                    continue
                case .finished:
                    if let done = try? await journal?.finishedReport(taskId: spec.taskId) {
                        report(done, acknowledging: delivery)
                    } else {
                        delivery.ack()
                    }
                    continue
                case .start:
                    break
                }
                let done: TaskFinished?
                do {
                    // A first hand-over names a task that has not run: only a repeated one can
                    // be in the journal, so the common case reads nothing.
                    done = WorkflowHeaders.isRepeated(delivery) ? try await journal?.finishedReport(taskId: spec.taskId) : nil
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
                    report(done, acknowledging: delivery)
                    continue
                }
                // Runners in other processes share the journal: the one that claims it runs it.
                let claimed: Bool
                do {
                    claimed = try await journal?.claimTask(spec.taskId, owner: id, lease: Self.claimLease) ?? true
                } catch {
                    logger.error("could not claim a task", metadata: ["task.id": "\(spec.taskId)", "error": "\(error)"])
                    claimed = false
                }
                guard claimed else {
                    // Another runner runs it (or the journal is away): back to the broker, after a
                    // pause. It comes back as finished, or, if that runner died, free to run.
                    claims.withLock { $0.claims.release(spec.taskId) }
                    group.addTask {
                        try? await Task.sleep(for: .seconds(1))
                        delivery.reject(requeue: true)
                    }
                    continue
                }
                start(spec, job: job, acknowledging: delivery, nodeServer: nodeServer)
            }
        }
    }

    /// Runs a claimed task's job in a task of its own, which a cancel or a timeout cancels: one
    /// task per job, whose handle is registered before it starts, so no cancel can miss it.
    private func start(_ spec: TaskSpec, job: any Job, acknowledging delivery: Delivery<RunMessage>, nodeServer: RPCServer) {
        let handle = JobHandle()
        registerCanceller(for: spec.taskId, timeoutMs: spec.timeoutMs, cancel: handle.cancel)
        // Made under the lock that its end takes, so it is in `jobsUnderWay` before it can leave it.
        let task = jobsUnderWay.withLock { underWay in
            let task = Task {
                if let body = await self.execute(spec, job: job, nodeServer: nodeServer) {
                    self.report(taskId: spec.taskId, body: body, acknowledging: delivery)
                } else {
                    delivery.ack()
                }
                self.jobsUnderWay.withLock { _ = $0.removeValue(forKey: spec.taskId) }
            }
            underWay[spec.taskId] = task
            return task
        }
        handle.start(task)
        // A runner that is stopping starts no job that it would not stop.
        if Task.isCancelled { handle.cancel() }
    }

    /// The jobs under way, by task id, so that a stopping runner waits for them.
    private let jobsUnderWay = Mutex<[String: Task<Void, Never>]>([:])

    /// Runs the job (in the task ``start(_:job:acknowledging:nodeServer:)`` made, which a cancel,
    /// a timeout or shutdown cancels) and records its end; returns the report to publish (nil if
    /// it cannot be encoded).
    private func execute(_ spec: TaskSpec, job: any Job, nodeServer: RPCServer) async -> [UInt8]? {
        let context = JobContext(task: spec, bus: bus, logger: logger)
        logger.debug("task started", metadata: ["task.id": "\(spec.taskId)", "task.job": "\(spec.job)"])
        let answers = NodeAnswers(spec)
        let bound = if let answers { await startAnswering(answers, on: nodeServer) } else { false }
        let started = ContinuousClock.now
        let outcome: Result<[String: JSONValue], any Error>
        do { outcome = .success(try await job.run(context)) } catch { outcome = .failure(error) }
        jobDurations[spec.job]?.record(duration: ContinuousClock.now - started)
        guard Task.isCancelled else { return await finish(spec, outcome: outcome, answers: answers, bound: bound, nodeServer: nodeServer) }
        // Cancelled: the job is over, but its end is still recorded and reported, from a task
        // that is not cancelled (a database pool may refuse work to a cancelled one).
        return await Task { await self.finish(spec, outcome: outcome, answers: answers, bound: bound, nodeServer: nodeServer) }.value
    }

    /// After the job: stops answering for its node, records its end, and returns the report.
    private func finish(
        _ spec: TaskSpec, outcome: Result<[String: JSONValue], any Error>, answers: NodeAnswers?, bound: Bool, nodeServer: RPCServer
    ) async -> [UInt8]? {
        // An ended task stops answering for its node before it is reported: no stale answers.
        if let answers { await stopAnswering(answers, bound: bound, on: nodeServer) }
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
            return nil
        }
        do {
            try await journal?.recordFinished(taskId: result.taskId, body: body)
        } catch {
            logger.error("could not record a finished task", metadata: ["task.id": "\(spec.taskId)", "error": "\(error)"])
        }
        // Only now: until the journal has it, the claim keeps a duplicate from starting it again.
        finishClaim(spec.taskId)
        return body
    }

    /// Keeps this runner's claims alive while it runs. Runs until cancelled.
    private func renewClaims() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: Self.claimLease / 3)
            do {
                try await journal?.renewClaims(owner: id, lease: Self.claimLease)
            } catch  where !Task.isCancelled {
                logger.warning("could not renew task claims", metadata: ["error": "\(error)"])
            } catch {
                // Stopping: the claims lapse on their own.
            }
        }
    }

    private func finishedReport(_ spec: TaskSpec, state: TaskState, error: String?, context: [String: JSONValue]? = nil) -> TaskFinished {
        TaskFinished(
            taskId: spec.taskId, taskName: spec.taskName, label: spec.label, graphId: spec.graphId, graphName: spec.graphName, state: state,
            error: error, context: context)
    }

    private func report(_ report: TaskFinished, acknowledging delivery: Delivery<RunMessage>) {
        guard let body = try? WireFormat.encode(report) else {
            delivery.ack()
            return
        }
        self.report(taskId: report.taskId, body: body, acknowledging: delivery)
    }

    /// Publishes the report; the `run` it answers is acknowledged once the broker has the
    /// report, and comes back (to be answered from the journal) if the broker refuses it.
    private func report(taskId: String, body: [UInt8], acknowledging delivery: Delivery<RunMessage>) {
        bus.publishRawConfirmed(
            body: body, toExchangeNamed: bus.name(of: .events), routingKey: WorkflowKeys.taskFinished(taskId),
            type: TaskFinished.payloadType, persistent: true, acknowledging: delivery
        ) { [logger] result in
            guard case .failure(let error) = result else { return }
            logger.error("could not report a finished task; its run comes back", metadata: ["task.id": "\(taskId)", "error": "\(error)"])
        }
    }

    // MARK: Node-scoped RPCs

    /// While a task runs against a node, this runner answers that node's RPCs: `activeTaskExists`
    /// and `requestProperties` always, `requestProfile`/`getBootProfile` when it has a `profile`
    /// option, `requestCommands` when it has `commands`. One server per runner, on a private
    /// queue, answers them all: a task binds its node's keys to that queue when it starts and
    /// unbinds them when it ends, so a request for a node reaches only the runner that runs its
    /// task, and no queue is declared or deleted per task.
    private func makeNodeServer() async throws -> RPCServer {
        let exchange = bus.name(of: .task)
        return try await bus.routedServer(
            exchangeNamed: exchange, queueBase: "\(exchange):methods.node", method: "methods.node",
            expectedType: ActiveTaskExists.payloadType, concurrency: concurrency
        ) { _, context in
            try self.nodeReply(routingKey: context.routingKey)
        }
    }

    /// The answer for `methods.<name>.<nodeId>` from the newest running task for the node that
    /// has one; none (the caller times out, as RackHD's callers expect) when no task has.
    private func nodeReply(routingKey: String) throws -> ServedReply {
        for method in NodeAnswers.methods where routingKey.hasPrefix(method) && routingKey.dropFirst(method.count).first == "." {
            let node = String(routingKey.dropFirst(method.count + 1))
            let registered = nodeAnswers.withLock { $0[node] ?? [] }
            for answers in registered.reversed() {
                if let reply = try answers.reply(to: method) { return reply }
            }
            return .unanswered
        }
        return .unanswered
    }

    /// Whether the keys were bound: only then may the task unbind them, since bindings are
    /// counted and another task for the node may hold the same keys.
    private func startAnswering(_ answers: NodeAnswers, on server: RPCServer) async -> Bool {
        nodeAnswers.withLock { $0[answers.node, default: []].append(answers) }
        do {
            try await server.bind(routingKeys: answers.routingKeys)
            return true
        } catch {
            logger.warning("could not answer for the node", metadata: ["task.id": "\(answers.taskId)", "error": "\(error)"])
            return false
        }
    }

    private func stopAnswering(_ answers: NodeAnswers, bound: Bool, on server: RPCServer) async {
        nodeAnswers.withLock { table in
            table[answers.node]?.removeAll { $0.taskId == answers.taskId }
            if table[answers.node]?.isEmpty == true { table[answers.node] = nil }
        }
        guard bound else { return }
        do {
            try await server.unbind(routingKeys: answers.routingKeys)
        } catch  where error.code == .cancelled || error.code == .shutdown {
            // The runner is stopping: its queue, and every binding on it, goes with it.
        } catch {
            logger.warning("could not stop answering for the node", metadata: ["task.id": "\(answers.taskId)", "error": "\(error)"])
        }
    }

    /// Running tasks' answers by node, newest last (two tasks may run against one node).
    private let nodeAnswers = Mutex<[String: [NodeAnswers]]>([:])

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
            guard let task = running.tasks[request.taskId] else {
                // Its run has not come (yet): cancel it when it does.
                running.claims.cancelledBeforeClaim(request.taskId, reason: request.errName ?? "TaskCancellationError")
                return nil
            }
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
enum RunMessage: DirectJSONDecodable, Sendable {
    case runnable(TaskSpec)
    case malformed(TaskFinished)

    /// A well-formed spec, read directly; anything else goes through `init(from:)`.
    init?(json: JSONValue) {
        guard let spec = TaskSpec(json: json) else { return nil }
        self = .runnable(spec)
    }

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

/// What a task running against a node answers for it.
struct NodeAnswers: Sendable {
    static let methods = [
        ActiveTaskExists.method, RequestProperties.method, RequestProfile.method, GetBootProfile.method, RequestCommands.method,
    ]

    let node: String
    let taskId: String
    let active: ActiveTask
    let properties: [String: JSONValue]
    let profile: String?
    let commands: RequestCommands.Commands?

    /// Nil for a task without a node.
    init?(_ spec: TaskSpec) {
        guard let node = spec.nodeId, !node.isEmpty else { return nil }
        self.node = node
        taskId = spec.taskId
        active = ActiveTask(
            taskId: spec.taskId, graphId: spec.graphId, graphName: spec.graphName, taskName: spec.taskName, label: spec.label, job: spec.job
        )
        properties = spec.options
        profile = spec.options["profile"]?.stringValue
        commands = spec.options["commands"].map { RequestCommands.Commands(identifier: node, tasks: LinuxCommandsJob.commandList($0)) }
    }

    /// The keys this task answers, and so binds.
    var routingKeys: [String] {
        var keys = [ActiveTaskExists(nodeId: node).routingKey, RequestProperties(nodeId: node).routingKey]
        if profile != nil { keys += [RequestProfile(nodeId: node).routingKey, GetBootProfile(nodeId: node).routingKey] }
        if commands != nil { keys.append(RequestCommands(nodeId: node).routingKey) }
        return keys
    }

    /// The reply to `method` in RackHD's Result envelope, or nil when this task has none.
    func reply(to method: String) throws -> ServedReply? {
        switch method {
        case ActiveTaskExists.method: try Self.served(active, as: ActiveTaskExists.self)
        case RequestProperties.method: try Self.served(properties, as: RequestProperties.self)
        case RequestProfile.method: try profile.map { try Self.served($0, as: RequestProfile.self) }
        case GetBootProfile.method: try profile.map { try Self.served($0, as: GetBootProfile.self) }
        case RequestCommands.method: try commands.map { try Self.served($0, as: RequestCommands.self) }
        default: nil
        }
    }

    private static func served<Request: BusRequest>(_ reply: Request.Reply, as request: Request.Type) throws -> ServedReply {
        let (body, hasValue) = try WireFormat.encodeResult(reply)
        return ServedReply(body: body, type: Request.replyPayloadType(for: reply), hasValue: hasValue)
    }
}

/// Cancels a job's task, also when the cancel comes before the task exists: it is then cancelled
/// as soon as it is handed over.
final class JobHandle: Sendable {
    private let state = Mutex<(task: Task<Void, Never>?, cancelled: Bool)>((nil, false))

    func cancel() {
        state.withLock { state -> Task<Void, Never>? in
            state.cancelled = true
            return state.task
        }?.cancel()
    }

    func start(_ task: Task<Void, Never>) {
        let cancelled = state.withLock { state -> Bool in
            state.task = task
            return state.cancelled
        }
        if cancelled { task.cancel() }
    }
}
