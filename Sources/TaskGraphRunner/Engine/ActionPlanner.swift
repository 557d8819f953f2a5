import BusCore
import Foundation

/// Turns a graph's decisions into the messages that carry them out, against the graph's state at
/// the moment of the decision, so that they are stored with it (the outbox). Pure.
struct ActionPlanner: Sendable {
    /// Broker-side names of the exchanges the messages go to.
    struct Exchanges: Sendable {
        var scheduler: String
        var task: String
        var events: String
    }

    let exchanges: Exchanges
    /// Jobs that read nothing of the graph's context but their rendered options (the built-in
    /// ones): their tasks carry only the graph's identity in `context`, not all of it. A job
    /// outside this set (an external worker's) gets the whole context, as documented.
    var contextFreeJobs: Set<String> = Set(BuiltInJobs.all.map { type(of: $0).name })
    var makeID: @Sendable () -> String = { RandomUUID.timeOrdered() }

    /// What a task of a context-free job still carries of the context.
    static let identityKeys: Set<String> = ["graphId", "graphName", "target"]

    /// The messages for `actions`. A task whose options cannot be rendered fails at once, as
    /// RackHD's TemplateRenderError did, and what its graph decides then is carried out too.
    func carryOut(_ actions: [GraphRun.Action], on instance: inout GraphInstance) -> [OutboxMessage] {
        var pending = actions[...]
        var messages: [OutboxMessage] = []
        while let action = pending.popFirst() {
            switch action {
            case .start(let label):
                do {
                    guard let spec = try taskSpec(label, in: instance) else { continue }
                    messages.append(try message(spec, graph: instance.id, to: exchanges.scheduler, key: WorkflowKeys.schedule, work: true))
                } catch {
                    instance.errors[label] = "TemplateRenderError: \(error)"
                    pending.append(contentsOf: instance.run.taskFinished(label: label, state: .failed))
                }
            case .cancel(let label):
                guard let taskID = instance.taskIDs[label] else { continue }
                let cancellation = TaskCancellation(
                    taskId: taskID, errName: "TaskCancellationError", errMessage: "graph \(instance.run.status.rawValue)")
                // Strings only: encoding cannot fail.
                if let cancel = try? message(
                    cancellation, graph: instance.id, to: exchanges.task, key: WorkflowKeys.cancel(taskID), work: false)
                {
                    messages.append(cancel)
                }
            case .finished(let status):
                let finished = GraphEvent(
                    graphId: instance.id, graphName: instance.plan.definition.friendlyName, status: status.rawValue, nodeId: instance.target
                )
                if let announcement = try? event(finished, key: WorkflowKeys.graphFinished(instance.id), graph: instance.id) {
                    messages.append(announcement)
                }
            }
        }
        return messages
    }

    /// An announcement about a graph (`graph.started`, `graph.finished`): not persistent, like every event.
    func event(_ event: GraphEvent, key: String, graph: String) throws -> OutboxMessage {
        var message = try message(event, graph: graph, to: exchanges.events, key: key, work: false)
        message.persistent = false
        return message
    }

    /// Work for the Schedulers (`schedule`) is mandatory: with no queue to take it, the broker
    /// refuses it rather than drop it. Work and cancellations are persistent.
    private func message<T: Encodable>(_ value: T, graph: String, to exchange: String, key: String, work: Bool) throws -> OutboxMessage {
        OutboxMessage(
            id: makeID(), graphId: graph, exchange: exchange, routingKey: key, type: "Object", body: try WireFormat.encode(value),
            persistent: true, mandatory: work, onlyWhileGraphActive: work)
    }

    /// Renders the task's options against the graph's current context. Nil for a label the plan does not have; throws when the options cannot be rendered.
    private func taskSpec(_ label: String, in instance: GraphInstance) throws -> TaskSpec? {
        guard let task = instance.plan.tasks.first(where: { $0.label == label }), let taskID = instance.taskIDs[label] else {
            return nil
        }
        let scope = TemplateScope(
            options: task.options, context: instance.context, nodeId: instance.target, graphId: instance.id, taskId: taskID)
        let options = try OptionTemplate.renderOptions(task.options, scope: scope)
        let timeout: Int
        if case .number(let milliseconds) = options["_taskTimeout"] ?? .null {
            timeout = Int(milliseconds)
        } else {
            timeout = 86_400_000
        }
        let context =
            contextFreeJobs.contains(task.runJob) ? instance.context.filter { Self.identityKeys.contains($0.key) } : instance.context
        return TaskSpec(
            taskId: taskID, graphId: instance.id, graphName: instance.plan.definition.injectableName, label: label,
            taskName: task.taskName, job: task.runJob, options: options, context: context, nodeId: instance.target,
            timeoutMs: timeout, overrides: options["schedulerOverrides"]?.objectValue)
    }
}
