/// A graph's `_status`. RackHD has no `paused`; here it means "let running tasks finish, start nothing".
public enum GraphStatus: String, Codable, Sendable {
    case pending
    case running
    case paused
    case succeeded
    case failed
    case cancelled

    public var isFinished: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// The state machine of one graph run, RackHD's scheduler semantics (on-taskgraph
/// `lib/task-scheduler.js`) without I/O: feed it events, carry out the actions it returns.
///
/// The plan is expected to come from `GraphCompiler` (unique labels, known waitOn targets, no cycles).
public struct GraphRun: Codable, Sendable, Equatable {
    public enum Action: Codable, Sendable, Equatable {
        /// Hand the task to the scheduler.
        case start(label: String)
        /// Stop a running task; its `taskFinished` report is still expected.
        case cancel(label: String)
        /// The graph reached a final status (RackHD's `graph.finished`).
        case finished(GraphStatus)
    }

    public let plan: GraphPlan
    public private(set) var status: GraphStatus
    /// By label; every task is `pending` at first and `running` once started.
    public private(set) var states: [String: TaskState]

    /// The part of a run that changes, for storage: the plan is stored once, beside it.
    public struct Progress: Codable, Sendable, Equatable {
        public var status: GraphStatus
        public var states: [String: TaskState]
    }

    public var progress: Progress { Progress(status: status, states: states) }

    /// A run restored from storage.
    public init(plan: GraphPlan, progress: Progress) {
        self.init(plan: plan)
        status = progress.status
        for (label, state) in progress.states where states[label] != nil {
            states[label] = state
        }
    }

    public init(plan: GraphPlan) {
        self.plan = plan
        status = .pending
        states = Dictionary(plan.tasks.map { ($0.label, TaskState.pending) }, uniquingKeysWith: { first, _ in first })
    }

    /// Pending tasks whose waitOn can no longer be met. They never run and do not hold up success.
    public var unreachable: Set<String> {
        // Grow to a fixpoint: a task waiting on an unreachable task is unreachable too.
        var unreachable: Set<String> = []
        var grew = true
        while grew {
            grew = false
            for task in plan.tasks where states[task.label] == .pending && !unreachable.contains(task.label) {
                if canNeverStart(task, unreachable: unreachable) {
                    unreachable.insert(task.label)
                    grew = true
                }
            }
        }
        return unreachable
    }

    /// pending → running; starts every task that waits on nothing.
    public mutating func begin() -> [Action] {
        guard status == .pending else { return [] }
        status = .running
        return advance()
    }

    /// Records a running task's final state and says what follows. Reports for unknown labels,
    /// tasks that are not running, or states that are not final change nothing, so duplicates are harmless.
    public mutating func taskFinished(label: String, state: TaskState) -> [Action] {
        guard state.isFinished, states[label] == .running else { return [] }
        states[label] = state
        // A task cancelled by a failed or cancelled graph reports late; the graph has already ended.
        guard !status.isFinished else { return [] }
        if let task = plan.tasks.first(where: { $0.label == label }), failsGraph(task, endingIn: state) {
            return end(as: .failed)
        }
        return advance()
    }

    /// running → paused: running tasks finish, nothing new starts.
    public mutating func pause() -> [Action] {
        guard status == .running else { return [] }
        status = .paused
        return []
    }

    /// paused → running: starts what became ready meanwhile, and may finish the graph.
    public mutating func resume() -> [Action] {
        guard status == .paused else { return [] }
        status = .running
        return advance()
    }

    /// Cancels an unfinished graph: pending tasks become `cancelled`, running ones are told to stop.
    public mutating func cancel() -> [Action] {
        guard !status.isFinished else { return [] }
        return end(as: .cancelled)
    }

    // MARK: - Evaluation

    /// RackHD fails the graph only for a failure no downstream task handles and the task does not ignore.
    private func failsGraph(_ task: CompiledTask, endingIn state: TaskState) -> Bool {
        state.isFailure && task.terminalOnStates.contains(state) && !task.ignoreFailure
    }

    /// Starts every ready task (unless paused), then succeeds the graph if nothing is left to do.
    private mutating func advance() -> [Action] {
        var actions: [Action] = []
        if status == .running {
            for task in plan.tasks where states[task.label] == .pending && isReady(task) {
                states[task.label] = .running
                actions.append(.start(label: task.label))
            }
        }
        // Unlike RackHD since on-core ec6f008, a reachable pending task (a parallel branch) blocks
        // success. A running task is work left: only without one is reachability worked out.
        if !states.values.contains(.running) && !hasReachablePendingTask {
            status = .succeeded
            actions.append(.finished(.succeeded))
        }
        return actions
    }

    /// RackHD's `failGraph`: pending tasks take the graph's final state, running ones are cancelled.
    private mutating func end(as finalStatus: GraphStatus) -> [Action] {
        let pendingTasksBecome: TaskState = finalStatus == .failed ? .failed : .cancelled
        var actions: [Action] = []
        for task in plan.tasks {
            switch states[task.label] {
            case .pending: states[task.label] = pendingTasksBecome
            case .running: actions.append(.cancel(label: task.label))
            default: break
            }
        }
        status = finalStatus
        actions.append(.finished(finalStatus))
        return actions
    }

    private var hasReachablePendingTask: Bool {
        let unreachable = self.unreachable
        return plan.tasks.contains { states[$0.label] == .pending && !unreachable.contains($0.label) }
    }

    private enum WaitOutcome { case satisfied, open, impossible }

    private func outcome(waitingOn upstream: String, for waits: [WaitState], unreachable: Set<String>) -> WaitOutcome {
        // A label that is not in the graph can never finish.
        guard let state = states[upstream] else { return .impossible }
        if state.isFinished { return waits.contains { $0.isSatisfied(by: state) } ? .satisfied : .impossible }
        return unreachable.contains(upstream) ? .impossible : .open
    }

    private func isReady(_ task: CompiledTask) -> Bool {
        let allMet = task.waitOn.all.allSatisfy { outcome(waitingOn: $0.key, for: $0.value, unreachable: []) == .satisfied }
        guard allMet, let anyOf = task.waitOn.anyOf else { return allMet }
        return anyOf.contains { outcome(waitingOn: $0.key, for: $0.value, unreachable: []) == .satisfied }
    }

    private func canNeverStart(_ task: CompiledTask, unreachable: Set<String>) -> Bool {
        if task.waitOn.all.contains(where: { outcome(waitingOn: $0.key, for: $0.value, unreachable: unreachable) == .impossible }) {
            return true
        }
        guard let anyOf = task.waitOn.anyOf else { return false }
        return anyOf.allSatisfy { outcome(waitingOn: $0.key, for: $0.value, unreachable: unreachable) == .impossible }
    }
}
