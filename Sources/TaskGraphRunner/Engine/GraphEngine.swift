import BusCore
import Foundation
import Logging

/// Owns the task and graph library and carries out what graphs decide. It decides nothing
/// itself: ``GraphRun`` decides, ``ActionPlanner`` turns decisions into messages, and the store
/// keeps the new state together with those messages before the ``OutboxRelay`` sends them, so any
/// instance (this one after a restart, or another) carries on where one stopped. Several engines,
/// in several processes, may share one store (PostgreSQL): it holds no graph state of its own.
actor GraphEngine {
    private let bus: MessageBus
    private let store: any GraphStore
    private let outbox: OutboxRelay
    private let planner: ActionPlanner
    private let faults: EngineFaults?
    private let metrics: WorkflowMetrics
    private let logger: Logger
    private var library: TaskLibrary {
        didSet { plans = [:] }
    }
    private var graphs: [String: GraphDefinition] {
        didSet { plans = [:] }
    }
    /// Plans of graphs run without options, by name: compiling is pure, and most runs name a
    /// graph and a target only. Forgotten whenever the library or the graphs change.
    private var plans: [String: GraphPlan] = [:]
    /// The store's ``GraphStore/definitionsVersion()`` when the library was loaded.
    private var libraryVersion: Int64?

    init(
        bus: MessageBus, store: any GraphStore, logger: Logger, faults: EngineFaults? = nil, metrics: WorkflowMetrics = WorkflowMetrics()
    ) async throws {
        self.bus = bus
        self.store = store
        self.faults = faults
        self.metrics = metrics
        self.logger = logger
        self.outbox = OutboxRelay(bus: bus, store: store, logger: logger, resent: metrics.outboxResent)
        self.planner = ActionPlanner(
            exchanges: .init(scheduler: bus.name(of: .scheduler), task: bus.name(of: .task), events: bus.name(of: .events)))
        libraryVersion = try await store.definitionsVersion()
        (library, graphs) = Self.library(stored: try await store.definitions())
    }

    /// Built-ins first, so that a stored definition of the same name overrides them.
    private static func library(stored: (tasks: [TaskDefinition], graphs: [GraphDefinition])) -> (TaskLibrary, [String: GraphDefinition]) {
        var tasks: [String: TaskDefinition] = [:]
        for task in BuiltInLibrary.tasks + stored.tasks { tasks[task.injectableName] = task }
        var graphs: [String: GraphDefinition] = [:]
        for graph in BuiltInLibrary.graphs + stored.graphs { graphs[graph.injectableName] = graph }
        return (TaskLibrary(Array(tasks.values)), graphs)
    }

    /// Reads the definitions again if another instance sharing the store has saved one since
    /// they were loaded. The version is read first: a definition saved meanwhile shows as a newer
    /// version next time.
    private func refreshLibraryIfChanged() async throws {
        guard let version = try await store.definitionsVersion(), version != libraryVersion else { return }
        libraryVersion = version
        (library, graphs) = Self.library(stored: try await store.definitions())
    }

    /// Sends what the outbox holds that nobody sent: after a crash (this instance's or another's)
    /// and after failed sends. Runs until cancelled.
    func sweepOutbox() async {
        await outbox.sweep()
    }

    /// Forgets what the outbox sent and the broker confirmed. Runs until cancelled.
    nonisolated func forgetSentMessages() async {
        await outbox.forgetSettled()
    }

    // MARK: Library

    func taskLibrary(filter: GraphFilter?) async throws -> [TaskDefinition] {
        try await refreshLibraryIfChanged()
        return library.definitions.values.filter { filter?.injectableName == nil || $0.injectableName == filter?.injectableName }
            .sorted { $0.injectableName < $1.injectableName }
    }

    func graphLibrary(filter: GraphFilter?) async throws -> [GraphDefinition] {
        try await refreshLibraryIfChanged()
        return graphs.values.filter { filter?.injectableName == nil || $0.injectableName == filter?.injectableName }
            .sorted { $0.injectableName < $1.injectableName }
    }

    func define(_ task: TaskDefinition) async throws -> String {
        guard !task.injectableName.isEmpty, !task.friendlyName.isEmpty else {
            throw ErrorEvent.badRequest("A task definition needs a friendlyName and an injectableName.")
        }
        guard task.isBaseTask || task.implementsTask != nil else {
            throw ErrorEvent.badRequest("Task \(task.injectableName) needs implementsTask (a task) or runJob (a base task).")
        }
        if let base = task.implementsTask, library.definition(named: base) == nil {
            try await refreshLibraryIfChanged()
            guard library.definition(named: base) != nil else {
                throw ErrorEvent.notFound("Base task definition for \(task.injectableName) should exist")
            }
        }
        try await store.saveTaskDefinition(task)
        library.definitions[task.injectableName] = task
        return task.injectableName
    }

    func define(_ graph: GraphDefinition) async throws -> String {
        try await refreshLibraryIfChanged()
        try GraphCompiler.validate(graph, library: library)
        try await store.saveGraphDefinition(graph)
        graphs[graph.injectableName] = graph
        return graph.injectableName
    }

    // MARK: Instances

    /// Creates and begins a graph. With `idempotencyKey`, a retry of a request that created a
    /// graph (its reply was lost) answers with that graph instead of creating another; the same
    /// key on a request for another graph or target is a 409, not somebody else's graph.
    func run(name: String, options: [String: JSONValue], target: String?, idempotencyKey: String? = nil) async throws -> GraphSummary {
        // A redefinition through another instance counts as much as a new name.
        try await refreshLibraryIfChanged()
        guard let definition = graphs[name] else {
            throw ErrorEvent.notFound("Graph with name \(name) does not exist.")
        }
        let plan: GraphPlan
        if options.isEmpty, let compiled = plans[name] {
            plan = compiled
        } else {
            plan = try GraphCompiler.compile(definition, library: library, options: options)
            if options.isEmpty { plans[name] = plan }
        }
        let id = RandomUUID.timeOrdered()
        var context: [String: JSONValue] = ["graphId": .string(id), "graphName": .string(definition.injectableName)]
        if let target { context["target"] = .string(target) }
        var instance = GraphInstance(
            id: id, plan: plan, run: GraphRun(plan: plan), target: target, context: context,
            taskIDs: Dictionary(uniqueKeysWithValues: plan.tasks.map { ($0.label, RandomUUID.timeOrdered()) }), errors: [:],
            createdAt: Date(), idempotencyKey: idempotencyKey)
        let actions = instance.run.begin()
        var messages = [
            try planner.event(
                GraphEvent(graphId: id, graphName: definition.friendlyName, status: "running", nodeId: target),
                key: WorkflowKeys.graphStarted(id), graph: id)
        ]
        messages += planner.carryOut(actions, on: &instance)
        let change = GraphChange(instance: instance, outbox: messages)
        do {
            try faults?.write?(instance)
            try await store.create(change)
        } catch GraphStoreError.alreadyCreated(let existing) {
            guard let graph = try await store.graph(id: existing) else { throw ErrorEvent.notFound("Graph \(existing) is gone.") }
            guard graph.plan.definition.injectableName == definition.injectableName, graph.target == target else {
                throw ErrorEvent.conflict(
                    "Idempotency key \(idempotencyKey ?? "") was used for another request (graph \(existing)).",
                    context: ["graphId": .string(existing)])
            }
            logger.info("a retried run answered with its graph", metadata: ["graph.id": "\(existing)"])
            return summary(of: graph)
        } catch GraphStoreError.targetBusy(let target) {
            throw ErrorEvent.badRequest("Unable to run multiple task graphs against a single target.", context: ["target": .string(target)])
        }
        var metadata: Logger.Metadata = ["graph.id": "\(id)", "graph.name": "\(name)"]
        if let target { metadata["node.id"] = "\(target)" }
        logger.info("graph started", metadata: metadata)
        metrics.graphsStarted.increment()
        carryOut(change)
        return summary(of: instance)
    }

    /// Whether reports are handled without a task each (``taskFinished(_:completion:)``): the
    /// store decides at once and says when the change is committed.
    nonisolated var handlesReportsWithoutTasks: Bool { store.changesWithoutTasks }

    /// A task runner reported a task's end. Returns false when its effect could not be stored
    /// (nothing changed and the report should come again); true when it is stored or changes
    /// nothing (an unknown graph or task, or a task that no longer runs: a duplicate).
    ///
    /// Not isolated to the engine: it touches no state of the engine's own (the store keeps each
    /// graph's turn), so a report costs no hop onto the actor and back.
    @discardableResult
    nonisolated func taskFinished(_ report: TaskFinished) async -> Bool {
        do {
            stored(try await store.change(graph: report.graphId, isolation: nil, decision(for: report)), for: report)
            return true
        } catch {
            logStoreFailure(error, for: report)
            return false
        }
    }

    /// ``taskFinished(_:)`` without a task: `completion` hears the outcome on the store's thread.
    nonisolated func taskFinished(_ report: TaskFinished, completion: @escaping @Sendable (Bool) -> Void) {
        store.change(graph: report.graphId, decision(for: report)) { result in
            switch result {
            case .success(let change):
                self.stored(change, for: report)
                completion(true)
            case .failure(let error):
                self.logStoreFailure(error, for: report)
                completion(false)
            }
        }
    }

    /// What a task's end changes in its graph, if it is a running task of an active graph.
    private nonisolated func decision(for report: TaskFinished) -> @Sendable (GraphInstance) throws -> GraphChange? {
        { [planner, faults] current in
            guard let label = current.label(ofTask: report.taskId), report.state.isFinished, current.run.states[label] == .running
            else { return nil }
            var instance = current
            let actions = instance.run.taskFinished(label: label, state: report.state)
            if let error = report.error { instance.errors[label] = error }
            if let context = report.context {
                for (key, value) in context { instance.context[key] = value }
            }
            let messages = planner.carryOut(actions, on: &instance)
            try faults?.write?(instance)
            return GraphChange(instance: instance, outbox: messages)
        }
    }

    /// Once a task's end is stored: its graph's progress, then what the change decided.
    private nonisolated func stored(_ change: GraphChange?, for report: TaskFinished) {
        guard let change, let label = change.instance.label(ofTask: report.taskId) else { return }
        metrics.taskFinished(report.state)
        let instance = change.instance
        publishEvent(
            GraphProgress(
                graphId: instance.id, graphName: instance.plan.definition.friendlyName, nodeId: instance.target,
                finishedTasks: instance.run.states.values.filter(\.isFinished).count, totalTasks: instance.plan.tasks.count,
                taskId: report.taskId, label: label, taskState: report.state),
            key: WorkflowKeys.graphProgress(instance.id))
        carryOut(change)
    }

    private nonisolated func logStoreFailure(_ error: any Error, for report: TaskFinished) {
        logger.error(
            "could not store a graph; the report goes back to be redelivered",
            metadata: ["graph.id": "\(report.graphId)", "error": "\(error)"])
    }

    func cancel(_ filter: GraphFilter) async throws -> String? {
        guard try await find(filter) != nil else { return nil }
        return try await change(filter) { $0.cancel() }
    }

    func pause(_ filter: GraphFilter) async throws -> GraphFilter {
        GraphFilter(instanceId: try await change(filter) { $0.pause() })
    }

    func resume(_ filter: GraphFilter) async throws -> GraphFilter {
        GraphFilter(instanceId: try await change(filter) { $0.resume() })
    }

    /// Applies an operator's decision to the active graph that `filter` names: store, then act.
    /// Returns the graph's id.
    private func change(_ filter: GraphFilter, _ decide: @escaping @Sendable (inout GraphRun) -> [GraphRun.Action]) async throws -> String {
        guard let id = try await find(filter)?.id else { throw ErrorEvent.notFound("No active graph matches \(describe(filter)).") }
        let change = try await store.change(graph: id, isolation: self) { current in
            var instance = current
            let actions = decide(&instance.run)
            let messages = planner.carryOut(actions, on: &instance)
            try faults?.write?(instance)
            return GraphChange(instance: instance, outbox: messages)
        }
        // Ended meanwhile (by its last task, or by another instance).
        guard let change else { throw ErrorEvent.notFound("No active graph matches \(describe(filter)).") }
        carryOut(change)
        return id
    }

    func activeGraph(_ filter: GraphFilter?) async throws -> GraphSummary? {
        guard let filter else { return try await store.activeGraphs(target: nil, name: nil).first.map(summary) }
        return try await find(filter).map(summary)
    }

    func activeGraphs(_ filter: GraphFilter?) async throws -> [GraphSummary] {
        try await store.activeGraphs(target: filter?.target, name: filter?.injectableName).map(summary)
    }

    func properties(_ filter: GraphFilter) async throws -> GraphProperties {
        var instance = try await find(filter)
        if instance == nil, let id = filter.id { instance = try await store.graph(id: id) }
        guard let instance else { throw ErrorEvent.notFound("No graph matches \(describe(filter)).") }
        var tasks: [String: GraphProperties.TaskProperties] = [:]
        for task in instance.plan.tasks {
            tasks[task.label] = GraphProperties.TaskProperties(
                taskId: instance.taskIDs[task.label] ?? "", label: task.label, name: task.taskName, job: task.runJob,
                state: instance.run.states[task.label] ?? .pending, options: task.options, waitOn: task.waitOn,
                ignoreFailure: task.ignoreFailure, terminalOnStates: task.terminalOnStates, error: instance.errors[task.label])
        }
        return GraphProperties(
            instanceId: instance.id, status: instance.run.status.rawValue, target: instance.target, definition: instance.plan.definition,
            options: instance.plan.options, context: instance.context, tasks: tasks)
    }

    // MARK: Helpers

    /// Sends what a stored change decided, and logs a graph's end.
    private nonisolated func carryOut(_ change: GraphChange) {
        let instance = change.instance
        if instance.run.status.isFinished {
            var metadata: Logger.Metadata = ["graph.id": "\(instance.id)", "graph.status": "\(instance.run.status.rawValue)"]
            if let target = instance.target { metadata["node.id"] = "\(target)" }
            logger.info("graph finished", metadata: metadata)
            metrics.graphFinished(instance.run.status)
        }
        outbox.send(change.outbox)
    }

    /// The active graph that `filter` names, by id or by target.
    private func find(_ filter: GraphFilter) async throws -> GraphInstance? {
        if let id = filter.id {
            guard let instance = try await store.graph(id: id), instance.isActive else { return nil }
            return instance
        }
        if let target = filter.target { return try await store.activeGraphs(target: target, name: nil).first }
        return nil
    }

    private func describe(_ filter: GraphFilter) -> String {
        filter.id.map { "instanceId \($0)" } ?? filter.target.map { "target \($0)" } ?? "an empty filter"
    }

    /// `Date.formatted(.iso8601)`'s style, made once rather than for every summary.
    private static let createdAtStyle = Date.ISO8601FormatStyle()

    private func summary(of instance: GraphInstance) -> GraphSummary {
        var tasks: [String: GraphSummary.TaskSummary] = [:]
        for task in instance.plan.tasks {
            guard let id = instance.taskIDs[task.label] else { continue }
            tasks[id] = GraphSummary.TaskSummary(label: task.label, name: task.taskName, state: instance.run.states[task.label] ?? .pending)
        }
        return GraphSummary(
            instanceId: instance.id, name: instance.plan.definition.injectableName, friendlyName: instance.plan.definition.friendlyName,
            status: instance.run.status.rawValue, target: instance.target,
            createdAt: Self.createdAtStyle.format(instance.createdAt),
            tasks: tasks)
    }

    /// Progress is announced as it happens, not stored: a lost one is superseded by the next.
    private nonisolated func publishEvent<T: Encodable & Sendable>(_ value: T, key: String) {
        do {
            try bus.publishWithoutWaiting(value, to: .events, routingKey: key)
        } catch {
            logger.warning("could not publish an event", metadata: ["amqp.routing_key": "\(key)", "error": "\(error)"])
        }
    }
}

/// Failures a test injects where the engine stores a graph; nil in production.
struct EngineFaults: Sendable {
    /// Called before each graph write; throwing fails that write.
    var write: (@Sendable (GraphInstance) throws -> Void)?
}

extension JSONValue {
    var objectValue: [String: JSONValue]? {
        if case .object(let object) = self { return object }
        return nil
    }
}
