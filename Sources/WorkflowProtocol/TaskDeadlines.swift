/// The `_taskTimeout` deadlines of running tasks, for whoever enforces them (the Scheduler, and
/// the task runner as a backstop). Pure; each deadline fires once.
public struct TaskDeadlines: Sendable {
    private var deadlines: [String: ContinuousClock.Instant] = [:]

    public init() {}

    /// Watches a task that starts `now` with `timeoutMs` to run; 0 or less means no limit.
    public mutating func watch(_ taskID: String, timeoutMs: Int, from now: ContinuousClock.Instant) {
        guard timeoutMs > 0 else { return }
        deadlines[taskID] = now + .milliseconds(timeoutMs)
    }

    /// The task ended: no timeout for it.
    public mutating func forget(_ taskID: String) {
        deadlines[taskID] = nil
    }

    /// The tasks whose deadline has passed, each returned once, oldest deadline first.
    public mutating func takeExpired(now: ContinuousClock.Instant) -> [String] {
        let expired = deadlines.filter { $0.value <= now }.sorted { $0.value < $1.value }.map(\.key)
        for taskID in expired { deadlines[taskID] = nil }
        return expired
    }
}
