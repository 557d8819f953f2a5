/// Work publishes (`schedule`, for one graph) that failed, each due again after a backoff that
/// doubles with every failure, up to ``maximumDelay``. Pure: the engine sends, this decides when.
struct PendingPublishes: Sendable {
    struct Work: Sendable, Equatable {
        var graph: String?
        var exchange: String
        var key: String
        var type: String
        var body: [UInt8]
        var mandatory: Bool
        /// How many times it failed.
        var failures = 0
    }

    static let firstDelay = Duration.milliseconds(100)
    static let maximumDelay = Duration.seconds(2)

    private var entries: [(work: Work, due: ContinuousClock.Instant)] = []

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }
    var nextDue: ContinuousClock.Instant? { entries.map(\.due).min() }

    static func delay(afterFailures failures: Int) -> Duration {
        // Capped before multiplying, so no count of failures overflows.
        let doublings = min(max(0, failures - 1), 10)
        return min(firstDelay * (1 << doublings), maximumDelay)
    }

    /// Records one more failure of `work`, due again after its backoff.
    mutating func add(_ work: Work, now: ContinuousClock.Instant) {
        var work = work
        work.failures += 1
        entries.append((work, now + Self.delay(afterFailures: work.failures)))
    }

    /// Takes the work due by `now`, oldest first; work for a graph that is no longer active is dropped.
    mutating func takeDue(now: ContinuousClock.Instant, isActive: (String) -> Bool) -> [Work] {
        var due: [Work] = []
        var kept: [(work: Work, due: ContinuousClock.Instant)] = []
        for entry in entries {
            if let graph = entry.work.graph, !isActive(graph) { continue }
            if entry.due <= now { due.append(entry.work) } else { kept.append(entry) }
        }
        entries = kept
        return due
    }
}
