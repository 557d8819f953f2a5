import BusCore
import Logging
import Synchronization

/// Tells the Schedulers which tasks ended, a batch at a time (`tasks.ended`), so that they free
/// their slots without a copy of every `task.finished` report.
///
/// Each report is settled (acknowledged, or dead-lettered) only once its end is sent: a process
/// killed in between leaves the report to be redelivered, and its end is sent again then, so no
/// Scheduler keeps a slot for a task that ended.
final class TaskEndNotices: Sendable {
    /// How long the first end of a batch waits for others.
    static let window = Duration.milliseconds(5)

    private struct Pending {
        var taskIDs: [String] = []
        var settle: [@Sendable (_ sent: Bool) -> Void] = []
        /// The sender, while it waits for a first end.
        var waiter: CheckedContinuation<Void, Never>?
        /// Set when ``run()`` is cancelled, under the same lock as `waiter`, so no wait begins after it.
        var stopping = false
    }

    private let bus: MessageBus
    private let logger: Logger
    private let pending = Mutex(Pending())

    init(bus: MessageBus, logger: Logger) {
        self.bus = bus
        self.logger = logger
    }

    /// Adds the end of `taskID`; `settle` runs once it was sent (true), or could not be (false).
    func add(_ taskID: String, settle: @escaping @Sendable (_ sent: Bool) -> Void) {
        let waiter = pending.withLock { pending -> CheckedContinuation<Void, Never>? in
            pending.taskIDs.append(taskID)
            pending.settle.append(settle)
            defer { pending.waiter = nil }
            return pending.waiter
        }
        waiter?.resume()
    }

    /// Sends batches until cancelled, then what is left.
    func run() async {
        while !Task.isCancelled {
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let ready = pending.withLock { pending -> Bool in
                        guard pending.taskIDs.isEmpty, !pending.stopping else { return true }
                        pending.waiter = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            } onCancel: {
                pending.withLock { pending -> CheckedContinuation<Void, Never>? in
                    pending.stopping = true
                    defer { pending.waiter = nil }
                    return pending.waiter
                }?.resume()
            }
            try? await Task.sleep(for: Self.window)
            await send()
        }
        await send()
    }

    private func send() async {
        let (taskIDs, settle) = pending.withLock { pending in
            defer { (pending.taskIDs, pending.settle) = ([], []) }
            return (pending.taskIDs, pending.settle)
        }
        guard !taskIDs.isEmpty else { return }
        var sent = true
        do {
            try await bus.publish(TasksEnded(taskIds: taskIDs), to: .scheduler, routingKey: WorkflowKeys.tasksEnded)
        } catch {
            logger.warning("could not tell the Schedulers which tasks ended; their reports come back", metadata: ["error": "\(error)"])
            sent = false
        }
        for settle in settle { settle(sent) }
    }
}
