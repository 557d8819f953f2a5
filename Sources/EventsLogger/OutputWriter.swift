import Dispatch
import Foundation
import Logging
import Synchronization

/// Prints lines to standard output and/or a rotating file on a thread of its own, so that a
/// slow terminal or disk never blocks the cooperative pool. ``write(_:)`` never waits: at most
/// `capacity` lines queue up, and lines beyond that are dropped and reported in the output.
final class OutputWriter: Sendable {
    private struct State {
        var lines: [String] = []
        var closed = false
        /// Lines accepted (queued) and lines handled (written or failed) so far, for ``flush()``.
        var accepted: UInt64 = 0
        var handled: UInt64 = 0
        var droppedSinceReport = 0
        var flushWaiters: [(target: UInt64, continuation: CheckedContinuation<Void, Never>)] = []
        var finished = false
        var finishWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())
    private let wakeUp = DispatchSemaphore(value: 0)
    private let capacity: Int
    private let format: LogLineFormat

    private init(capacity: Int, format: LogLineFormat) {
        self.capacity = max(1, capacity)
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
        let (accepted, wasIdle) = state.withLock { state -> (Bool, Bool) in
            guard !state.closed else { return (false, false) }
            guard state.lines.count < capacity else {
                state.droppedSinceReport += 1
                return (false, false)
            }
            state.lines.append(line)
            state.accepted += 1
            return (true, state.lines.count == 1)
        }
        if wasIdle {
            // One signal per empty-to-busy change: the thread takes everything queued at once.
            wakeUp.signal()
        }
        return accepted
    }

    /// Returns once every line queued before the call is written (or failed to be).
    func flush() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                if state.handled >= state.accepted || state.finished { return true }
                state.flushWaiters.append((state.accepted, continuation))
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Writes what is queued, closes the file and ends the thread.
    func close() async {
        state.withLock { $0.closed = true }
        wakeUp.signal()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                if state.finished { return true }
                state.finishWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    private func drainUntilClosed(toStandardOutput: Bool, logFile: RotatingLogFile?, logger: Logger) {
        var failing = false
        while true {
            wakeUp.wait()
            let (lines, dropped, closed) = state.withLock { state in
                defer {
                    state.lines.removeAll(keepingCapacity: true)
                    state.droppedSinceReport = 0
                }
                return (state.lines, state.droppedSinceReport, state.closed)
            }
            var output = lines
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
            let resumable = state.withLock { state in
                state.handled += UInt64(lines.count)
                if closed {
                    state.finished = true
                }
                let handled = state.handled
                let ready = state.flushWaiters.filter { $0.target <= handled || closed }.map(\.continuation)
                state.flushWaiters.removeAll { $0.target <= handled || closed }
                if closed {
                    defer { state.finishWaiters.removeAll() }
                    return ready + state.finishWaiters
                }
                return ready
            }
            for continuation in resumable { continuation.resume() }
            if closed { return }
        }
    }
}

func currentMilliseconds() -> Int64 {
    Int64((Date().timeIntervalSince1970 * 1000).rounded())
}
