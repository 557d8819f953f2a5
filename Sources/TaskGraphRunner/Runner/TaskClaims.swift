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

    /// Gives up a claim without running the task (its delivery goes back to the broker).
    mutating func release(_ taskID: String) {
        running.remove(taskID)
    }
}
