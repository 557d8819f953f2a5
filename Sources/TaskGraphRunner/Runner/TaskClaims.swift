/// Which tasks a runner has taken on. A task is claimed in the delivery loop, before its job's
/// task exists, so a second delivery of the same `run` (the broker's redelivery beside a resumed
/// graph's new hand-over) never starts the job twice. Pure.
struct TaskClaims: Sendable {
    enum Decision: Sendable, Equatable {
        /// Newly claimed: start the job.
        case start
        /// Claimed and not finished: it runs here already.
        case running
        /// Finished here recently: never start it again.
        case finished
    }

    private var running: Set<String> = []
    /// Finished ids in two generations, so memory stays bounded (at most twice the capacity)
    /// without per-id bookkeeping; an id forgotten here is still in the durable journal, if any.
    private var finishedRecent: Set<String> = []
    private var finishedOlder: Set<String> = []
    /// Cancellations that came before their task's `run` (still on its way through the
    /// Scheduler), with their reasons: the task is cancelled as soon as it is claimed. In two
    /// generations too: a run that went to another runner leaves nothing here for good.
    private var cancelledRecent: [String: String] = [:]
    private var cancelledOlder: [String: String] = [:]
    private let capacity: Int

    init(rememberingFinished capacity: Int = 50_000) {
        self.capacity = max(1, capacity)
    }

    var finishedCount: Int { finishedRecent.count + finishedOlder.count }

    func isRunning(_ taskID: String) -> Bool { running.contains(taskID) }

    mutating func claim(_ taskID: String) -> Decision {
        if running.contains(taskID) { return .running }
        if finishedRecent.contains(taskID) || finishedOlder.contains(taskID) { return .finished }
        running.insert(taskID)
        return .start
    }

    /// The task ended (and is recorded): later deliveries of it are answered, not run.
    mutating func finish(_ taskID: String) {
        running.remove(taskID)
        if finishedRecent.count >= capacity {
            finishedOlder = finishedRecent
            finishedRecent = []
        }
        finishedRecent.insert(taskID)
    }

    /// A cancel for a task that this runner has not claimed (yet).
    mutating func cancelledBeforeClaim(_ taskID: String, reason: String) {
        guard !claimedOrFinished(taskID), cancelledRecent[taskID] == nil, cancelledOlder[taskID] == nil else { return }
        if cancelledRecent.count >= capacity {
            cancelledOlder = cancelledRecent
            cancelledRecent = [:]
        }
        cancelledRecent[taskID] = reason
    }

    private func claimedOrFinished(_ taskID: String) -> Bool {
        running.contains(taskID) || finishedRecent.contains(taskID) || finishedOlder.contains(taskID)
    }

    /// The reason a task was cancelled before it was claimed, once.
    mutating func takeEarlyCancellation(_ taskID: String) -> String? {
        cancelledRecent.removeValue(forKey: taskID) ?? cancelledOlder.removeValue(forKey: taskID)
    }

    /// Gives up a claim without running the task (its delivery goes back to the broker).
    mutating func release(_ taskID: String) {
        running.remove(taskID)
    }
}
