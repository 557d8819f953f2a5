import BusCore
import Foundation
import Logging

/// Owns the task and graph library and every active graph instance. It decides nothing itself:
/// ``GraphRun`` decides, the engine persists the result first and then carries out the actions
/// (schedule a task, cancel a task, announce the end), so a restart resumes where it stopped.
actor GraphEngine {
    private let bus: MessageBus
    private let store: GraphStore
    private let faults: EngineFaults?
    private let logger: Logger
    private var library: TaskLibrary
    private var graphs: [String: GraphDefinition]
    private var active: [String: GraphInstance] = [:]
    /// Graphs whose change is being stored, and who waits to change them next: one change per
    /// graph at a time, so memory can follow the store without losing a concurrent change.
    private var changing: Set<String> = []
    private var waitingToChange: [String: [CheckedContinuation<Void, Never>]] = [:]
    /// Targets of graphs being created, so that two runs for one node cannot both pass the check.
    private var reservedTargets: Set<String> = []
    /// Work publishes that failed, retried until they go through or their graph ends.
    private var pendingPublishes = PendingPublishes()
    private let publishFailed: AsyncStream<Void>.Continuation
    private let publishFailures: AsyncStream<Void>

    init(bus: MessageBus, store: GraphStore, logger: Logger, faults: EngineFaults? = nil) async throws {
        self.bus = bus
        self.store = store
        self.faults = faults
        (publishFailures, publishFailed) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.logger = logger
        let saved = try await store.definitions()
        // Built-ins first, so that a stored definition of the same name overrides them.
        var tasks: [String: TaskDefinition] = [:]
        for task in BuiltInLibrary.tasks + saved.tasks { tasks[task.injectableName] = task }
        library = TaskLibrary(Array(tasks.values))
        var graphs: [String: GraphDefinition] = [:]
        for graph in BuiltInLibrary.graphs + saved.graphs { graphs[graph.injectableName] = graph }
        self.graphs = graphs
        for instance in try await store.activeGraphs() {
            active[instance.id] = instance
        }
    }

    /// After a restart: tasks that were handed to the scheduler are handed again (the scheduler
    /// and the task runners ignore tasks they already know), and graphs that became ready move on.
    func resumeActiveGraphs() async {
        for (id, instance) in active {
            let running = instance.run.states.filter { $0.value == .running }.map(\.key)
            logger.notice("resuming graph", metadata: ["graph.id": "\(id)", "graph.running": "\(running.count)"])
            for label in running.sorted() {
                await schedule(label, in: instance)
            }
        }
    }

    // MARK: Library

    func taskLibrary(filter: GraphFilter?) -> [TaskDefinition] {
        library.definitions.values.filter { filter?.injectableName == nil || $0.injectableName == filter?.injectableName }
            .sorted { $0.injectableName < $1.injectableName }
    }

    func graphLibrary(filter: GraphFilter?) -> [GraphDefinition] {
        graphs.values.filter { filter?.injectableName == nil || $0.injectableName == filter?.injectableName }
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
            throw ErrorEvent.notFound("Base task definition for \(task.injectableName) should exist")
        }
        try await store.saveTaskDefinition(task)
        library.definitions[task.injectableName] = task
        return task.injectableName
    }

    func define(_ graph: GraphDefinition) async throws -> String {
        try GraphCompiler.validate(graph, library: library)
        try await store.saveGraphDefinition(graph)
        graphs[graph.injectableName] = graph
        return graph.injectableName
    }

    // MARK: Instances

    func run(name: String, options: [String: JSONValue], target: String?) async throws -> GraphSummary {
        guard let definition = graphs[name] else {
            throw ErrorEvent.notFound("Graph with name \(name) does not exist.")
        }
        if let target, reservedTargets.contains(target) || active.values.contains(where: { $0.target == target }) {
            throw ErrorEvent.badRequest("Unable to run multiple task graphs against a single target.", context: ["target": .string(target)])
        }
        if let target { reservedTargets.insert(target) }
        defer { if let target { reservedTargets.remove(target) } }
        let plan = try GraphCompiler.compile(definition, library: library, options: options)
        let id = UUID().uuidString.lowercased()
        var context: [String: JSONValue] = ["graphId": .string(id), "graphName": .string(definition.injectableName)]
        if let target { context["target"] = .string(target) }
        var instance = GraphInstance(
            id: id, plan: plan, run: GraphRun(plan: plan), target: target, context: context,
            taskIDs: Dictionary(uniqueKeysWithValues: plan.tasks.map { ($0.label, UUID().uuidString.lowercased()) }), errors: [:],
            createdAt: Date())
        let actions = instance.run.begin()
        try await persist(instance, isNew: true)
        var metadata: Logger.Metadata = ["graph.id": "\(id)", "graph.name": "\(name)"]
        if let target { metadata["node.id"] = "\(target)" }
        logger.info("graph started", metadata: metadata)
        await publishEvent(
            GraphEvent(graphId: id, graphName: definition.friendlyName, status: "running", nodeId: target),
            key: WorkflowKeys.graphStarted(id))
        await carryOut(actions, for: instance)
        return summary(of: active[id] ?? instance)
    }

    /// A task runner reported a task's end. Returns false when its effect could not be stored
    /// (memory is then unchanged and the report should come again); true when it is stored or
    /// changes nothing (an unknown graph or task, or a task that no longer runs: a duplicate).
    @discardableResult
    func taskFinished(_ report: TaskFinished) async -> Bool {
        await beginChange(of: report.graphId)
        guard var instance = active[report.graphId], let label = instance.label(ofTask: report.taskId),
            report.state.isFinished, instance.run.states[label] == .running
        else {
            endChange(of: report.graphId)
            return true
        }
        let actions = instance.run.taskFinished(label: label, state: report.state)
        if let error = report.error { instance.errors[label] = error }
        if let context = report.context {
            for (key, value) in context { instance.context[key] = value }
        }
        do {
            try await persist(instance)
            endChange(of: instance.id)
        } catch {
            endChange(of: instance.id)
            logger.error(
                "could not store a graph; the report goes back to be redelivered",
                metadata: ["graph.id": "\(instance.id)", "error": "\(error)"])
            return false
        }
        await publishEvent(
            GraphProgress(
                graphId: instance.id, graphName: instance.plan.definition.friendlyName, nodeId: instance.target,
                finishedTasks: instance.run.states.values.filter(\.isFinished).count, totalTasks: instance.plan.tasks.count,
                taskId: report.taskId, label: label, taskState: report.state),
            key: WorkflowKeys.graphProgress(instance.id))
        await carryOut(actions, for: instance)
        return true
    }

    func cancel(_ filter: GraphFilter) async throws -> String? {
        guard find(filter) != nil else { return nil }
        return try await change(filter) { $0.cancel() }
    }

    func pause(_ filter: GraphFilter) async throws -> GraphFilter {
        GraphFilter(instanceId: try await change(filter) { $0.pause() })
    }

    func resume(_ filter: GraphFilter) async throws -> GraphFilter {
        GraphFilter(instanceId: try await change(filter) { $0.resume() })
    }

    /// Applies an operator's decision to the active graph that `filter` names: persist, then act.
    /// Returns the graph's id.
    private func change(_ filter: GraphFilter, _ decide: (inout GraphRun) -> [GraphRun.Action]) async throws -> String {
        guard let id = find(filter)?.id else { throw ErrorEvent.notFound("No active graph matches \(describe(filter)).") }
        await beginChange(of: id)
        // Read again under the graph's turn: a change stored while this one waited counts.
        guard var instance = active[id] else {
            endChange(of: id)
            throw ErrorEvent.notFound("No active graph matches \(describe(filter)).")
        }
        let actions = decide(&instance.run)
        do {
            try await persist(instance)
        } catch {
            endChange(of: id)
            throw error
        }
        // The turn ends before acting: acting may report a task's end (a template that cannot render).
        endChange(of: id)
        await carryOut(actions, for: instance)
        return instance.id
    }

    func activeGraph(_ filter: GraphFilter?) -> GraphSummary? {
        guard let filter else { return active.values.sorted { $0.createdAt < $1.createdAt }.first.map(summary) }
        return find(filter).map(summary)
    }

    func activeGraphs(_ filter: GraphFilter?) -> [GraphSummary] {
        active.values.filter { instance in
            (filter?.target == nil || instance.target == filter?.target)
                && (filter?.injectableName == nil || instance.plan.definition.injectableName == filter?.injectableName)
        }
        .sorted { $0.createdAt < $1.createdAt }.map(summary)
    }

    func properties(_ filter: GraphFilter) async throws -> GraphProperties {
        var instance = find(filter)
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

    // MARK: Carrying out decisions

    /// Acts on the newest state of the graph: the active one (a report handled meanwhile may have
    /// changed its context), else the one just stored (it has ended).
    private func carryOut(_ actions: [GraphRun.Action], for stored: GraphInstance) async {
        let id = stored.id
        for action in actions {
            let instance = active[id] ?? stored
            switch action {
            case .start(let label):
                await schedule(label, in: instance)
            case .cancel(let label):
                guard let taskID = instance.taskIDs[label] else { continue }
                await publish(
                    TaskCancellation(taskId: taskID, errName: "TaskCancellationError", errMessage: "graph \(instance.run.status.rawValue)"),
                    to: .task, key: WorkflowKeys.cancel(taskID))
            case .finished(let status):
                var metadata: Logger.Metadata = ["graph.id": "\(id)", "graph.status": "\(status.rawValue)"]
                if let target = instance.target { metadata["node.id"] = "\(target)" }
                logger.info("graph finished", metadata: metadata)
                await publishEvent(
                    GraphEvent(
                        graphId: id, graphName: instance.plan.definition.friendlyName, status: status.rawValue, nodeId: instance.target),
                    key: WorkflowKeys.graphFinished(id))
            }
        }
    }

    /// Renders the task's options against the graph's current context and hands it to the scheduler.
    private func schedule(_ label: String, in instance: GraphInstance) async {
        guard let task = instance.plan.tasks.first(where: { $0.label == label }), let taskID = instance.taskIDs[label] else { return }
        let scope = TemplateScope(
            options: task.options, context: instance.context, nodeId: instance.target, graphId: instance.id, taskId: taskID)
        let options: [String: JSONValue]
        do {
            options = try OptionTemplate.renderOptions(task.options, scope: scope)
        } catch {
            // A template that cannot render fails its task, as RackHD's TemplateRenderError did.
            await taskFinished(
                TaskFinished(
                    taskId: taskID, taskName: task.taskName, label: label, graphId: instance.id,
                    graphName: instance.plan.definition.injectableName,
                    state: .failed, error: "TemplateRenderError: \(error)"))
            return
        }
        let timeout: Int
        if case .number(let milliseconds) = options["_taskTimeout"] ?? .null {
            timeout = Int(milliseconds)
        } else {
            timeout = 86_400_000
        }
        let spec = TaskSpec(
            taskId: taskID, graphId: instance.id, graphName: instance.plan.definition.injectableName, label: label, taskName: task.taskName,
            job: task.runJob, options: options, context: instance.context, nodeId: instance.target, timeoutMs: timeout,
            overrides: options["schedulerOverrides"]?.objectValue)
        await publishSchedule(spec)
    }

    // MARK: Helpers

    /// Stores, then updates memory: a failed write leaves both as they were. Callers hold the
    /// graph's turn (``beginChange(of:)``), so no other change to it is lost meanwhile.
    private func persist(_ instance: GraphInstance, isNew: Bool = false) async throws {
        try faults?.write?(instance)
        if isNew {
            try await store.create(instance)
        } else {
            try await store.update(instance)
        }
        if instance.isActive {
            active[instance.id] = instance
        } else {
            active[instance.id] = nil
        }
    }

    /// Waits for the graph's turn to change: changes to one graph are stored one after another.
    private func beginChange(of id: String) async {
        guard changing.contains(id) else {
            changing.insert(id)
            return
        }
        await withCheckedContinuation { waitingToChange[id, default: []].append($0) }
    }

    /// Hands the graph's turn to the next waiter, if any.
    private func endChange(of id: String) {
        if var waiters = waitingToChange[id], !waiters.isEmpty {
            let next = waiters.removeFirst()
            waitingToChange[id] = waiters.isEmpty ? nil : waiters
            next.resume()
        } else {
            changing.remove(id)
        }
    }

    private func find(_ filter: GraphFilter) -> GraphInstance? {
        if let id = filter.id { return active[id] }
        if let target = filter.target { return active.values.first { $0.target == target } }
        return nil
    }

    private func describe(_ filter: GraphFilter) -> String {
        filter.id.map { "instanceId \($0)" } ?? filter.target.map { "target \($0)" } ?? "an empty filter"
    }

    private func summary(of instance: GraphInstance) -> GraphSummary {
        var tasks: [String: GraphSummary.TaskSummary] = [:]
        for task in instance.plan.tasks {
            guard let id = instance.taskIDs[task.label] else { continue }
            tasks[id] = GraphSummary.TaskSummary(label: task.label, name: task.taskName, state: instance.run.states[task.label] ?? .pending)
        }
        return GraphSummary(
            instanceId: instance.id, name: instance.plan.definition.injectableName, friendlyName: instance.plan.definition.friendlyName,
            status: instance.run.status.rawValue, target: instance.target,
            createdAt: instance.createdAt.formatted(.iso8601),
            tasks: tasks)
    }

    /// Work for other services goes out confirmed and persistent: it must survive a broker restart.
    private func publish<T: Encodable & Sendable>(_ value: T, to exchange: Exchange, key: String) async {
        do {
            try await bus.publishConfirmed(value, to: exchange, routingKey: key, persistent: true)
        } catch {
            logger.error("could not publish", metadata: ["amqp.routing_key": "\(key)", "error": "\(error)"])
        }
    }

    /// Hands a task to the Schedulers. Mandatory: with no queue to take it the broker refuses it
    /// rather than drop it. A failed hand-over is kept and retried (``retryFailedPublishes()``).
    private func publishSchedule(_ spec: TaskSpec) async {
        let body: [UInt8]
        do {
            body = try WireFormat.encode(spec)
        } catch {
            logger.error("could not encode a task", metadata: ["task.id": "\(spec.taskId)", "error": "\(error)"])
            return
        }
        let work = PendingPublishes.Work(
            graph: spec.graphId, exchange: bus.name(of: .scheduler), key: WorkflowKeys.schedule, type: TaskSpec.payloadType, body: body,
            mandatory: true)
        if await send(work) { return }
        pendingPublishes.add(work, now: .now)
        publishFailed.yield()
    }

    private func send(_ work: PendingPublishes.Work) async -> Bool {
        do {
            try await bus.publishRawConfirmed(
                body: work.body, toExchangeNamed: work.exchange, routingKey: work.key, type: work.type, persistent: true,
                mandatory: work.mandatory)
            return true
        } catch {
            logger.error("could not publish; it will be retried", metadata: ["amqp.routing_key": "\(work.key)", "error": "\(error)"])
            return false
        }
    }

    /// Retries failed work publishes with backoff until each goes through or its graph ends.
    /// Runs until cancelled.
    func retryFailedPublishes() async {
        for await _ in publishFailures {
            while !pendingPublishes.isEmpty, !Task.isCancelled {
                let wait = pendingPublishes.nextDue.map { ContinuousClock.now.duration(to: $0) } ?? .zero
                if wait > .zero { try? await Task.sleep(for: wait) }
                // While the broker is away, wait for it rather than fail each retry at once.
                try? await bus.waitUntilConnected(timeout: .seconds(5))
                let due = pendingPublishes.takeDue(now: .now) { self.active[$0] != nil }
                for work in due where await !send(work) {
                    pendingPublishes.add(work, now: .now)
                }
            }
        }
    }

    private func publishEvent<T: Encodable & Sendable>(_ value: T, key: String) async {
        do {
            try await bus.publish(value, to: .events, routingKey: key)
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
