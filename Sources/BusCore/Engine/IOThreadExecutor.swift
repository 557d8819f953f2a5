import Foundation

/// Runs tasks' code on a bus's I/O thread, between the turns of its loop, the way SwiftNIO runs
/// handlers on their event loop. A task that prefers this executor (`withTaskExecutorPreference`,
/// `addTask(executorPreference:)`) is resumed by a delivery on the thread that read it, and the
/// reply it submits is sent in the same turn: no wake-up of another thread on either side.
///
/// Code that runs here holds up the connection while it runs, so it must be short and must not
/// block; awaiting is fine (the task leaves the thread while it waits). After the bus has stopped,
/// jobs still run, on a spare thread the process shares, so that no task is stranded.
final class IOThreadExecutor: TaskExecutor {
    private let inbox: EngineInbox

    init(inbox: EngineInbox) {
        self.inbox = inbox
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if !inbox.submit(job: job) {
            SpareJobThread.shared.enqueue(job, on: asUnownedTaskExecutor())
        }
    }

    /// Runs `job` as this executor (the I/O thread, or the spare thread).
    func run(_ job: UnownedJob) {
        job.runSynchronously(on: asUnownedTaskExecutor())
    }
}

/// One thread for the whole process that runs the jobs of I/O-thread executors whose bus has
/// stopped. Rarely used: only work that outlives its bus lands here. Started on first use.
final class SpareJobThread: Sendable {
    static let shared = SpareJobThread()

    private struct Job: @unchecked Sendable {
        // An UnownedJob is run exactly once, by this thread; nothing else touches it.
        var job: UnownedJob
        var executor: UnownedTaskExecutor
    }

    /// Unbounded in effect: a job dropped would strand its task for ever.
    private let jobs = BatchQueue<Job>(capacity: .max)

    private init() {
        let jobs = self.jobs
        let thread = Thread {
            Thread.nameCurrent("rackbus-spare")
            while true {
                for entry in jobs.takeAllBlocking() { entry.job.runSynchronously(on: entry.executor) }
            }
        }
        thread.start()
    }

    func enqueue(_ job: UnownedJob, on executor: UnownedTaskExecutor) {
        jobs.append(Job(job: job, executor: executor))
    }
}
