import BusCore
import Foundation
import Logging
import NIOSSL
import PostgresNIO
import Synchronization

/// Definitions and graph instances in PostgreSQL, shared by any number of TaskGraphRunner
/// instances. Nothing about a graph's state is kept in memory: each change reads the graph's row
/// `FOR UPDATE` inside a transaction, so two instances never decide for one graph at once; the
/// database's unique index on active targets keeps one graph per node across instances.
///
/// ``run()`` must run (it drives the connection pool) while the store is used.
final class PostgresGraphStore: GraphStore {
    private let client: PostgresClient
    private let logger: Logger
    /// Graph headers (plan, task ids) never change once written: each instance decodes one only once.
    private let headers = Mutex(HeaderCache())
    /// Set once ``run()`` drives the pool, so that the first query does not race it.
    private let running = OneShotSignal()

    init(location: GraphStoreLocation.PostgresLocation, logger: Logger) {
        let tls: PostgresClient.Configuration.TLS =
            switch location.tls {
            case .disable: .disable
            case .prefer: .prefer(.makeClientConfiguration())
            case .require: .require(.makeClientConfiguration())
            }
        var configuration = PostgresClient.Configuration(
            host: location.host, port: location.port, username: location.username, password: location.password,
            database: location.database, tls: tls)
        configuration.options.maximumConnections = 16
        configuration.options.connectTimeout = .seconds(5)
        self.client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.logger = logger
    }

    /// Drives the connection pool until cancelled.
    func run() async {
        running.signal()
        await client.run()
    }

    /// Runs `body` in a transaction. The error is the one that stopped it (the closure's own,
    /// or that of BEGIN or COMMIT), not postgres-nio's wrapper, so callers can tell them apart.
    private func transaction<Result: Sendable>(
        isolation: isolated (any Actor)? = #isolation, _ body: (PostgresConnection) async throws -> sending Result
    ) async throws -> sending Result {
        do {
            return try await client.withTransaction(logger: logger, isolation: isolation, body)
        } catch let error as PostgresTransactionError {
            throw error.closureError ?? error.beginError ?? error.commitError ?? error
        }
    }

    // MARK: Schema

    /// Versioned schema changes, applied in order under an advisory lock: instances that start
    /// together do not race each other.
    private static let migrations: [(version: Int, statements: [String])] = [
        (
            1,
            [
                "CREATE TABLE task_definition (injectable_name text PRIMARY KEY, body bytea NOT NULL)",
                "CREATE TABLE graph_definition (injectable_name text PRIMARY KEY, body bytea NOT NULL)",
                """
                CREATE TABLE graph (id text PRIMARY KEY, name text NOT NULL, target text, active boolean NOT NULL,
                header bytea NOT NULL, state bytea NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)
                """,
                // One active graph per node, whichever instance creates it.
                "CREATE UNIQUE INDEX graph_one_active_per_target ON graph (target) WHERE active AND target IS NOT NULL",
                "CREATE INDEX graph_active ON graph (created_at) WHERE active",
                "CREATE TABLE finished_task (task_id text PRIMARY KEY, body bytea NOT NULL, finished_at timestamptz NOT NULL)",
                """
                CREATE TABLE outbox (id text PRIMARY KEY, graph_id text NOT NULL, exchange text NOT NULL, routing_key text NOT NULL,
                type text NOT NULL, body bytea NOT NULL, persistent boolean NOT NULL, mandatory boolean NOT NULL,
                only_while_graph_active boolean NOT NULL, not_before timestamptz NOT NULL, attempts integer NOT NULL)
                """,
                "CREATE INDEX outbox_not_before ON outbox (not_before)",
            ]
        ),
        (
            2,
            [
                "CREATE TABLE task_claim (task_id text PRIMARY KEY, owner text NOT NULL, expires_at timestamptz NOT NULL)",
                "CREATE INDEX task_claim_owner ON task_claim (owner)",
            ]
        ),
        (3, ["ALTER TABLE graph ADD COLUMN idempotency_key text CONSTRAINT graph_idempotency_key UNIQUE"]),
        // Advanced after every definition saved: other instances see that their library is stale.
        (4, ["CREATE SEQUENCE definition_change"]),
        (5, ["CREATE INDEX finished_task_finished_at ON finished_task (finished_at)"]),
    ]

    /// Brings the schema up to date. Waits (up to `timeout`) for the database to answer, so that
    /// an instance started before its database comes up once the database is there.
    func migrate(timeout: Duration = .seconds(30)) async throws {
        await running.wait()
        let deadline = ContinuousClock.now + timeout
        while true {
            do {
                try await applyMigrations()
                return
            } catch let error as PSQLError where error.code == .connectionError && ContinuousClock.now < deadline {
                logger.warning("waiting for the task graph database", metadata: ["error": "\(String(reflecting: error))"])
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func applyMigrations() async throws {
        try await transaction { connection in
            // Any constant shared by every instance; the transaction's end releases it.
            try await connection.query("SELECT pg_advisory_xact_lock(7261736275722)", logger: logger)
            try await connection.query("CREATE TABLE IF NOT EXISTS schema_migration (version integer PRIMARY KEY)", logger: logger)
            var applied: Set<Int> = []
            for try await version in try await connection.query("SELECT version FROM schema_migration", logger: logger).decode(Int.self) {
                applied.insert(version)
            }
            for migration in Self.migrations where !applied.contains(migration.version) {
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query("INSERT INTO schema_migration (version) VALUES (\(migration.version))", logger: logger)
            }
        }
    }

    // MARK: Definitions

    func saveTaskDefinition(_ definition: TaskDefinition) async throws {
        try await saveDefinition(definition, named: definition.injectableName, table: "task_definition")
    }

    func saveGraphDefinition(_ definition: GraphDefinition) async throws {
        try await saveDefinition(definition, named: definition.injectableName, table: "graph_definition")
    }

    /// `table` is one of the two definition tables of the migrations, never input. The version
    /// advances after the write has committed, so that an instance that sees the new version and
    /// reloads reads the new definition.
    private func saveDefinition(_ definition: some Encodable, named name: String, table: String) async throws {
        let body = try JSONEncoder().encode(definition)
        var query = PostgresQuery(
            unsafeSQL:
                "INSERT INTO \(table) (injectable_name, body) VALUES ($1, $2) ON CONFLICT (injectable_name) DO UPDATE SET body = EXCLUDED.body"
        )
        query.binds.append(name, context: .default)
        try query.binds.append(body, context: .default)
        try await client.query(query, logger: logger)
        try await client.query("SELECT nextval('definition_change')", logger: logger)
    }

    func definitionsVersion() async throws -> Int64? {
        // A sequence's last_value shows every session's nextval, committed or not, at once.
        for try await (value, called) in try await client.query(
            "SELECT last_value, is_called FROM definition_change", logger: logger
        ).decode((Int64, Bool).self) {
            return called ? value : 0
        }
        return 0
    }

    func definitions() async throws -> (tasks: [TaskDefinition], graphs: [GraphDefinition]) {
        let decoder = JSONDecoder()
        var tasks: [TaskDefinition] = []
        var graphs: [GraphDefinition] = []
        // A row this version cannot read is skipped rather than stopping the service.
        for try await body in try await client.query("SELECT body FROM task_definition", logger: logger).decode(Data.self) {
            if let task = try? decoder.decode(TaskDefinition.self, from: body) { tasks.append(task) }
        }
        for try await body in try await client.query("SELECT body FROM graph_definition", logger: logger).decode(Data.self) {
            if let graph = try? decoder.decode(GraphDefinition.self, from: body) { graphs.append(graph) }
        }
        return (tasks, graphs)
    }

    // MARK: Graphs

    func create(_ change: GraphChange) async throws {
        let instance = change.instance
        let header = try instance.header.encoded()
        let state = try instance.state.encoded()
        do {
            try await transaction { connection in
                try await connection.query(
                    """
                    INSERT INTO graph (id, name, target, active, header, state, created_at, updated_at, idempotency_key)
                    VALUES (\(instance.id), \(instance.plan.definition.injectableName), \(instance.target), \(instance.isActive),
                    \(header), \(state), \(instance.createdAt), now(), \(instance.idempotencyKey))
                    """, logger: logger)
                try await insert(change.outbox, on: connection)
            }
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == PostgresError.Code.uniqueViolation.raw {
            // A retry conflicts on its key and on its target at once: the key decides.
            if let key = instance.idempotencyKey {
                for try await id in try await client.query("SELECT id FROM graph WHERE idempotency_key = \(key)", logger: logger).decode(
                    String.self)
                {
                    throw GraphStoreError.alreadyCreated(id)
                }
            }
            throw GraphStoreError.targetBusy(instance.target ?? "")
        }
        headers.withLock { $0.insert(instance.header, for: instance.id) }
    }

    func change(
        graph id: String, isolation: isolated (any Actor)? = #isolation, _ decide: (GraphInstance) throws -> GraphChange?
    ) async throws -> GraphChange? {
        let cached = headers.withLock { $0.header(for: id) }
        return try await transaction(isolation: isolation) { connection -> GraphChange? in
            // The row lock: another instance's change to this graph waits here until this one commits.
            var found: (header: Data?, state: Data)?
            let rows = try await connection.query(
                "SELECT CASE WHEN \(cached == nil) THEN header END, state FROM graph WHERE id = \(id) AND active FOR UPDATE",
                logger: logger)
            for try await (header, state) in rows.decode((Data?, Data).self) { found = (header, state) }
            guard let found else { return nil }
            let decoder = JSONDecoder()
            guard let header = try cached ?? found.header.map({ try decoder.decode(GraphInstance.Header.self, from: $0) }) else {
                return nil
            }
            let current = GraphInstance(id: id, header: header, state: try GraphInstance.State.decoded(from: found.state))
            guard let change = try decide(current) else { return nil }
            let state = try change.instance.state.encoded()
            try await connection.query(
                "UPDATE graph SET active = \(change.instance.isActive), state = \(state), updated_at = now() WHERE id = \(id)",
                logger: logger)
            try await insert(change.outbox, on: connection)
            if cached == nil { headers.withLock { $0.insert(header, for: id) } }
            return change
        }
    }

    func activeGraphs(target: String?, name: String?) async throws -> [GraphInstance] {
        try await instances(
            try await client.query(
                """
                SELECT id, header, state FROM graph WHERE active AND (\(target)::text IS NULL OR target = \(target))
                AND (\(name)::text IS NULL OR name = \(name)) ORDER BY created_at, id
                """, logger: logger))
    }

    func graph(id: String) async throws -> GraphInstance? {
        try await instances(try await client.query("SELECT id, header, state FROM graph WHERE id = \(id)", logger: logger)).first
    }

    /// A row this version cannot read is skipped rather than stopping the service.
    private func instances(_ rows: PostgresRowSequence) async throws -> [GraphInstance] {
        let decoder = JSONDecoder()
        var instances: [GraphInstance] = []
        for try await (id, header, state) in rows.decode((String, Data, Data).self) {
            guard let header = try? decoder.decode(GraphInstance.Header.self, from: header),
                let state = try? GraphInstance.State.decoded(from: state)
            else {
                logger.warning("skipping a graph this version cannot read", metadata: ["graph.id": "\(id)"])
                continue
            }
            instances.append(GraphInstance(id: id, header: header, state: state))
        }
        return instances
    }

    // MARK: Outbox

    private func insert(_ messages: [OutboxMessage], on connection: PostgresConnection) async throws {
        let grace = OutboxMessage.grace.secondsValue
        for message in messages {
            try await connection.query(
                """
                INSERT INTO outbox (id, graph_id, exchange, routing_key, type, body, persistent, mandatory, only_while_graph_active,
                not_before, attempts) VALUES (\(message.id), \(message.graphId), \(message.exchange), \(message.routingKey),
                \(message.type), \(Data(message.body)), \(message.persistent), \(message.mandatory), \(message.onlyWhileGraphActive),
                now() + make_interval(secs => \(grace)), 0)
                """, logger: logger)
        }
    }

    func takeDueMessages(limit: Int, lease: Duration) async throws -> [OutboxMessage] {
        // Work for an ended graph is dropped, not sent.
        try await client.query(
            """
            DELETE FROM outbox o WHERE o.not_before <= now() AND o.only_while_graph_active
            AND NOT EXISTS (SELECT 1 FROM graph g WHERE g.id = o.graph_id AND g.active)
            """, logger: logger)
        // SKIP LOCKED: instances sweeping at once take different messages.
        let rows = try await client.query(
            """
            UPDATE outbox SET not_before = now() + make_interval(secs => \(lease.secondsValue)), attempts = attempts + 1
            WHERE id IN (SELECT id FROM outbox WHERE not_before <= now() ORDER BY not_before LIMIT \(limit) FOR UPDATE SKIP LOCKED)
            RETURNING id, graph_id, exchange, routing_key, type, body, persistent, mandatory, only_while_graph_active, attempts
            """, logger: logger)
        var messages: [OutboxMessage] = []
        for try await row in rows {
            let (id, graphId, exchange, routingKey, type, body, persistent, mandatory, onlyWhileGraphActive, attempts) = try row.decode(
                (String, String, String, String, String, Data, Bool, Bool, Bool, Int).self)
            messages.append(
                OutboxMessage(
                    id: id, graphId: graphId, exchange: exchange, routingKey: routingKey, type: type, body: [UInt8](body),
                    persistent: persistent, mandatory: mandatory, onlyWhileGraphActive: onlyWhileGraphActive, attempts: attempts))
        }
        return messages
    }

    func removeMessages(_ ids: [String]) async throws {
        guard !ids.isEmpty else { return }
        try await client.query("DELETE FROM outbox WHERE id = ANY(\(ids))", logger: logger)
    }

    func postponeMessage(_ id: String, by delay: Duration) async throws {
        try await client.query(
            "UPDATE outbox SET not_before = now() + make_interval(secs => \(delay.secondsValue)) WHERE id = \(id)", logger: logger)
    }

    // MARK: Finished tasks

    func recordFinished(taskId: String, body: [UInt8]) async throws {
        try await client.query(
            """
            WITH released AS (DELETE FROM task_claim WHERE task_id = \(taskId))
            INSERT INTO finished_task (task_id, body, finished_at) VALUES (\(taskId), \(Data(body)), now())
            ON CONFLICT (task_id) DO UPDATE SET body = EXCLUDED.body, finished_at = EXCLUDED.finished_at
            """, logger: logger)
    }

    func claimTask(_ taskId: String, owner: String, lease: Duration) async throws -> Bool {
        // Taken over only once the holder's lease has run out.
        let rows = try await client.query(
            """
            INSERT INTO task_claim (task_id, owner, expires_at) VALUES (\(taskId), \(owner), now() + make_interval(secs => \(lease.secondsValue)))
            ON CONFLICT (task_id) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
            WHERE task_claim.expires_at < now() OR task_claim.owner = EXCLUDED.owner
            RETURNING task_id
            """, logger: logger)
        for try await _ in rows { return true }
        return false
    }

    func renewClaims(owner: String, lease: Duration) async throws {
        try await client.query(
            "UPDATE task_claim SET expires_at = now() + make_interval(secs => \(lease.secondsValue)) WHERE owner = \(owner)", logger: logger
        )
    }

    func forgetFinishedTasks(before cutoff: Date) async throws -> Int {
        let rows = try await client.query(
            "WITH forgotten AS (DELETE FROM finished_task WHERE finished_at < \(cutoff) RETURNING 1) SELECT count(*) FROM forgotten",
            logger: logger)
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }

    func finishedReport(taskId: String) async throws -> TaskFinished? {
        for try await body in try await client.query("SELECT body FROM finished_task WHERE task_id = \(taskId)", logger: logger).decode(
            Data.self)
        {
            return try? JSONDecoder().decode(TaskFinished.self, from: body)
        }
        return nil
    }
}

/// Decoded graph headers by graph id, bounded: the oldest half goes when it is full.
struct HeaderCache: Sendable {
    private var headers: [String: GraphInstance.Header] = [:]
    private var order: [String] = []
    let capacity: Int

    init(capacity: Int = 4096) {
        self.capacity = max(2, capacity)
    }

    func header(for id: String) -> GraphInstance.Header? { headers[id] }

    mutating func insert(_ header: GraphInstance.Header, for id: String) {
        guard headers[id] == nil else { return }
        if order.count >= capacity {
            let evicted = order.prefix(capacity / 2)
            for id in evicted { headers[id] = nil }
            order.removeFirst(evicted.count)
        }
        headers[id] = header
        order.append(id)
    }
}
