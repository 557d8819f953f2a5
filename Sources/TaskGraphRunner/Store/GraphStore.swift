import BusCore
import Foundation

/// Where definitions, graph instances, finished tasks and unsent messages live.
///
/// Two kinds: ``SQLiteGraphStore``, private to one process (the default), and
/// ``PostgresGraphStore``, shared by any number of TaskGraphRunner instances. Either way a change
/// to a graph is read, decided and stored under a lock that no other change to that graph passes
/// (in any process), and the messages that carry the change out are stored in the same
/// transaction (an outbox): a decision is never acted on before it is stored, and never stored
/// without what it has to send.
protocol GraphStore: FinishedTaskJournal {
    func saveTaskDefinition(_ definition: TaskDefinition) async throws
    func saveGraphDefinition(_ definition: GraphDefinition) async throws
    func definitions() async throws -> (tasks: [TaskDefinition], graphs: [GraphDefinition])
    /// Changes whenever another instance may have saved a definition: an engine reloads its
    /// library when this differs from what it loaded with. Nil when no other process writes the
    /// store, so the engine's own copy is always current.
    func definitionsVersion() async throws -> Int64?

    /// Stores a new graph with its first messages. Throws ``GraphStoreError/targetBusy(_:)`` while
    /// another active graph has the same target, and ``GraphStoreError/alreadyCreated(_:)`` when
    /// a graph was created with the same idempotency key.
    func create(_ change: GraphChange) async throws

    /// Reads active graph `id` under its lock, lets `decide` change it, and stores the new state
    /// with `decide`'s messages in one transaction. Returns nil, storing nothing, when no active
    /// graph has that id or `decide` returns nil. A `decide` that throws stores nothing.
    func change(
        graph id: String, isolation: isolated (any Actor)?, _ decide: (GraphInstance) throws -> GraphChange?
    ) async throws -> GraphChange?

    /// Whether ``change(graph:_:completion:)`` does without a task of its own (SQLite: it decides
    /// at once and hears the commit on its writer's thread). If not, callers had better await
    /// ``change(graph:isolation:_:)`` from a task of their own, which their shutdown can wait for.
    var changesWithoutTasks: Bool { get }

    /// ``change(graph:isolation:_:)`` for callers that do not wait: `completion` hears the
    /// outcome, on a thread of the store's, and must be short and not block.
    func change(
        graph id: String, _ decide: @escaping @Sendable (GraphInstance) throws -> GraphChange?,
        completion: @escaping @Sendable (Result<GraphChange?, any Error>) -> Void)

    /// Active graphs, oldest first, optionally only those for `target` or of definition `name`.
    func activeGraphs(target: String?, name: String?) async throws -> [GraphInstance]
    /// Any graph, active or ended.
    func graph(id: String) async throws -> GraphInstance?

    /// Takes up to `limit` outbox messages that are due: their writer did not send them within
    /// ``OutboxMessage/grace`` (it died, or the send failed). Each taken message is leased for
    /// `lease`, so no other instance takes it meanwhile. Work for a graph that has ended is
    /// dropped, not returned.
    func takeDueMessages(limit: Int, lease: Duration) async throws -> [OutboxMessage]
    /// Forgets messages that the broker confirmed.
    func removeMessages(_ ids: [String]) async throws
    /// Makes a message due again after `delay` (its send failed).
    func postponeMessage(_ id: String, by delay: Duration) async throws

    /// Forgets the finished tasks recorded before `cutoff`, so the journal does not grow for
    /// ever; returns how many. A duplicate `run` of one (they come from restarts, within
    /// seconds) would then run again.
    func forgetFinishedTasks(before cutoff: Date) async throws -> Int
}

extension GraphStore {
    /// A store whose changes are awaited (PostgreSQL): a task per change.
    var changesWithoutTasks: Bool { false }

    func change(
        graph id: String, _ decide: @escaping @Sendable (GraphInstance) throws -> GraphChange?,
        completion: @escaping @Sendable (Result<GraphChange?, any Error>) -> Void
    ) {
        Task {
            do { completion(.success(try await change(graph: id, isolation: nil, decide))) } catch { completion(.failure(error)) }
        }
    }
}

/// A graph's new state and the messages that carry out the decisions that led to it.
struct GraphChange: Sendable, Equatable {
    var instance: GraphInstance
    var outbox: [OutboxMessage]
}

enum GraphStoreError: Error, Equatable {
    /// An active graph already runs against this target.
    case targetBusy(String)
    /// A graph (this id) was created for the same idempotency key: a retried request.
    case alreadyCreated(String)
}

/// A message stored with the change it carries out, and sent once that change is stored.
struct OutboxMessage: Sendable, Equatable {
    var id: String
    var graphId: String
    /// The broker-side exchange name.
    var exchange: String
    var routingKey: String
    var type: String
    var body: [UInt8]
    var persistent: Bool
    var mandatory: Bool
    /// Work for a task: dropped rather than sent once its graph has ended.
    var onlyWhileGraphActive: Bool
    /// How many times a sweep has taken it (its writer's own send is not counted).
    var attempts = 0

    /// How long a message waits for its writer to send it before any instance's outbox sweep may.
    static let grace = Duration.seconds(5)

    /// How long a failed send waits before the next try: doubling from 100 ms, capped at 2 s so
    /// that work moves again soon after the broker is back (the bus's own backoff, without jitter).
    static let retryPolicy = ReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .seconds(2), multiplier: 2, jitter: 0)

    static func retryDelay(afterFailures failures: Int) -> Duration {
        // Attempt 1 waits nothing; failure n is followed by attempt n + 1 (capped, so no count overflows).
        retryPolicy.delay(beforeAttempt: min(max(1, failures), 1_000) + 1, random: 0)
    }
}
