import BusCore
import Foundation
import Logging
import Synchronization

/// Prints lines to standard output and/or a rotating file on a thread of its own, so that a
/// slow terminal or disk never blocks the cooperative pool. ``write(_:)`` never waits: at most
/// `capacity` lines queue up, and lines beyond that are dropped and reported in the output.
final class OutputWriter: Sendable {
    private struct Progress {
        /// Lines handled (written or failed) so far; compared with the queue's accepted count for ``flush()``.
        var handled: UInt64 = 0
        var flushWaiters: [(target: UInt64, continuation: CheckedContinuation<Void, Never>)] = []
        var isFinished = false
    }

    private let lines: BatchQueue<String>
    private let droppedSinceReport = Atomic<Int>(0)
    private let progress = Mutex(Progress())
    private let finished = OneShotSignal()
    private let format: LogLineFormat

    private init(capacity: Int, format: LogLineFormat) {
        self.lines = BatchQueue(capacity: capacity)
        self.format = format
    }

    /// Starts the output thread. Throws when the log file cannot be opened.
    static func start(
        toStandardOutput: Bool, file: LogFileOptions?, format: LogLineFormat, capacity: Int, logger: Logger
    ) async throws -> OutputWriter {
        let writer = OutputWriter(capacity: capacity, format: format)
        try await withCheckedThrowingContinuation { (started: CheckedContinuation<Void, any Error>) in
            let thread = Thread {
                // The file is opened, written and closed on this thread only.
                let logFile: RotatingLogFile?
                do {
                    logFile = try file.map(RotatingLogFile.init)
                } catch {
                    started.resume(throwing: error)
                    return
                }
                started.resume()
                writer.drainUntilClosed(toStandardOutput: toStandardOutput, logFile: logFile, logger: logger)
            }
            thread.name = "rackbus.events-logger.output"
            thread.start()
        }
        return writer
    }

    /// Queues a line, or drops it when `capacity` lines are already waiting (the output then
    /// says how many it dropped). Returns whether the line was queued.
    @discardableResult
    func write(_ line: String) -> Bool {
        let accepted = lines.append(line)
        if !accepted { droppedSinceReport.add(1, ordering: .relaxed) }
        return accepted
    }

    /// Returns once every line queued before the call is written (or failed to be).
    func flush() async {
        let target = lines.acceptedCount
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = progress.withLock { progress -> Bool in
                if progress.handled >= target || progress.isFinished { return true }
                progress.flushWaiters.append((target, continuation))
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Writes what is queued, closes the file and ends the thread.
    func close() async {
        lines.close()
        await finished.waitIgnoringCancellation()
    }

    private func drainUntilClosed(toStandardOutput: Bool, logFile: RotatingLogFile?, logger: Logger) {
        var failing = false
        while true {
            let batch = lines.takeAllBlocking()
            let closed = batch.isEmpty
            var output = batch
            let dropped = droppedSinceReport.exchange(0, ordering: .relaxed)
            if dropped > 0 {
                output.append(LogLineFormatter.droppedLinesNotice(count: dropped, at: currentMilliseconds(), format: format))
            }
            if !output.isEmpty {
                do {
                    if toStandardOutput {
                        try RotatingLogFile.writeAll(Array((output.joined(separator: "\n") + "\n").utf8), to: STDOUT_FILENO)
                    }
                    try logFile?.append(lines: output)
                    failing = false
                } catch {
                    // Said once per failing spell: these lines may well come back here.
                    if !failing {
                        logger.error("cannot write log output", metadata: ["error": "\(error)"])
                    }
                    failing = true
                }
            }
            let resumable = progress.withLock { progress in
                progress.handled += UInt64(batch.count)
                progress.isFinished = closed
                let handled = progress.handled
                let ready = progress.flushWaiters.filter { $0.target <= handled || closed }.map(\.continuation)
                progress.flushWaiters.removeAll { $0.target <= handled || closed }
                return ready
            }
            for continuation in resumable { continuation.resume() }
            if closed {
                finished.signal()
                return
            }
        }
    }
}

func currentMilliseconds() -> Int64 {
    Int64((Date().timeIntervalSince1970 * 1000).rounded())
}
