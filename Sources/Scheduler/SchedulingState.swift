import DequeModule
import WorkflowProtocol

/// What a Scheduler knows and decides, without I/O: the requests that wait, the tasks that run,
/// their deadlines, and the task ids it has seen. Pure; ``SchedulerService`` feeds it what the
/// broker delivers and carries out what it returns.
///
/// Schedulers share one single-active-consumer queue, so the broker delivers `schedule` requests
/// to one of them at a time. The others stand by, and watch the hand-overs (`run.<taskId>`) and
/// ends (`tasks.ended`) go by: a spare that takes over then knows which tasks already
/// run, counts them against the limit, and hands none of them on again.
struct SchedulingState<Request> {
    enum Role: Equatable {
        /// No request delivered yet: another Scheduler is active (or none has work).
        case standingBy
        /// Requests are delivered here: the broker made this Scheduler the active one.
        case active
    }

    /// A request waiting for a free slot.
    struct Waiting {
        var taskId: String
        var timeoutMs: Int
        var request: Request
    }

    /// What to do with the next request.
    struct HandOver {
        var request: Request
        /// False for a task handed on before (a duplicate request): send it on without counting
        /// it, since its task already runs or ran.
        var counts: Bool
    }

    var concurrency: Int
    private(set) var role = Role.standingBy
    private(set) var running: Set<String> = []
    private var waiting: Deque<Waiting> = []
    private var deadlines = TaskDeadlines()
    /// Task ids handed on, by this Scheduler or, seen while standing by, by the active one.
    private var known: RecentTaskIDs
    /// Task ids whose end was heard: a hand-over heard after its end (the two come through
    /// different queues, moments apart) is not counted as running. Fewer suffice.
    private var ended: RecentTaskIDs

    init(concurrency: Int, remembered: Int) {
        self.concurrency = max(1, concurrency)
        known = RecentTaskIDs(capacity: remembered)
        ended = RecentTaskIDs(capacity: max(1, remembered / 10))
    }

    var knownCount: Int { known.count }
    var waitingCount: Int { waiting.count }

    /// A `schedule` request was delivered. Returns true when this makes the Scheduler active
    /// (its first delivery): it may stop watching hand-overs.
    mutating func received(_ request: Request, taskId: String, timeoutMs: Int) -> Bool {
        waiting.append(Waiting(taskId: taskId, timeoutMs: timeoutMs, request: request))
        guard role == .standingBy else { return false }
        role = .active
        return true
    }

    /// Standing by: the active Scheduler handed task `taskId` on (`run.<taskId>`).
    mutating func observedHandOver(taskId: String, timeoutMs: Int, now: ContinuousClock.Instant) {
        guard role == .standingBy, !ended.contains(taskId), !known.contains(taskId) else { return }
        known.insert(taskId)
        running.insert(taskId)
        deadlines.watch(taskId, timeoutMs: timeoutMs, from: now)
    }

    /// Task `taskId` ended. Returns whether that freed a slot.
    mutating func taskEnded(_ taskId: String) -> Bool {
        ended.insert(taskId)
        deadlines.forget(taskId)
        return running.remove(taskId) != nil
    }

    /// The next request to hand on now: nil while every slot is taken or none waits.
    mutating func takeNext(now: ContinuousClock.Instant) -> HandOver? {
        guard running.count < concurrency, let next = waiting.popFirst() else { return nil }
        if known.contains(next.taskId) { return HandOver(request: next.request, counts: false) }
        known.insert(next.taskId)
        running.insert(next.taskId)
        deadlines.watch(next.taskId, timeoutMs: next.timeoutMs, from: now)
        return HandOver(request: next.request, counts: true)
    }

    /// The hand-over of `taskId` failed; its request goes back to the broker and comes again.
    mutating func handOverFailed(_ taskId: String) {
        running.remove(taskId)
        deadlines.forget(taskId)
        known.remove(taskId)
    }

    /// Tasks past their deadline, each once. Only the active Scheduler cancels them; a spare
    /// keeps its deadlines for when it takes over.
    mutating func takeExpired(now: ContinuousClock.Instant) -> [String] {
        guard role == .active else { return [] }
        return deadlines.takeExpired(now: now)
    }
}
