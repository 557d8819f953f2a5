import BusCore
import Logging

/// Tells the Schedulers which tasks ended, a batch at a time (`tasks.ended`), so that they free
/// their slots without a copy of every `task.finished` report.
///
/// Each report is settled (acknowledged, or dead-lettered) only once its end is sent: a process
/// killed in between leaves the report to be redelivered, and its end is sent again then, so no
/// Scheduler keeps a slot for a task that ended.
final class TaskEndNotices: Sendable {
    /// How long ends gather after a batch before the next one goes.
    static let interval = Duration.milliseconds(5)

    private struct End: Sendable {
        var taskID: String
        var settle: @Sendable (_ sent: Bool) -> Void
    }

    private let bus: MessageBus
    private let logger: Logger
    /// Far more than the reports a TaskGraphRunner holds unacknowledged at once (its prefetch).
    private let ends = BatchQueue<End>(capacity: 65_536)

    init(bus: MessageBus, logger: Logger) {
        self.bus = bus
        self.logger = logger
    }

    /// Adds the end of `taskID`; `settle` runs once it was sent (true), or could not be (false,
    /// also at once when the notices have stopped).
    func add(_ taskID: String, settle: @escaping @Sendable (_ sent: Bool) -> Void) {
        if !ends.append(End(taskID: taskID, settle: settle)) { settle(false) }
    }

    /// Sends batches until cancelled, then what is left.
    func run() async {
        await withTaskCancellationHandler {
            while true {
                let batch = await ends.takeAll()
                guard !batch.isEmpty else { return }
                await send(batch)
                try? await Task.sleep(for: Self.interval)
            }
        } onCancel: {
            ends.close()
        }
    }

    private func send(_ batch: [End]) async {
        var sent = true
        do {
            try await bus.publish(TasksEnded(taskIds: batch.map(\.taskID)), to: .scheduler, routingKey: WorkflowKeys.tasksEnded)
        } catch {
            logger.warning("could not tell the Schedulers which tasks ended; their reports come back", metadata: ["error": "\(error)"])
            sent = false
        }
        for end in batch { end.settle(sent) }
    }
}
