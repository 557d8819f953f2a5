import Glibc

// MARK: Heartbeats and waiting

extension EngineLoop {
    func serviceHeartbeats(now: ContinuousClock.Instant) {
        guard let connection, heartbeat > .zero else { return }
        if now - lastReceive > heartbeat * 2 {
            lose(
                BusError(
                    code: .connectionLost, message: "no heartbeat from the broker for \(heartbeat * 2)"))
            return
        }
        if now - lastSend >= heartbeat / 2 {
            do {
                try connection.sendHeartbeat()
                lastSend = now
            } catch {
                lose(error)
            }
        }
    }

    /// Wakes the consumers waiting for what was read. Under load, a wake-up per read pass
    /// costs more than the deliveries it hands over (a futex and a thread switch each), so
    /// while the broker keeps sending, deliveries are gathered for a short, bounded while.
    func wakeConsumers() {
        guard !sleepingSinks.isEmpty else { return }
        if unwokenDeliveries < Self.wakeBatchLimit,
            ContinuousClock.now - firstUnwokenAt < Self.wakeBatchDelay,
            let connection, connection.hasBufferedInput || connection.waitUntilReadable(milliseconds: 0)
        {
            return
        }
        for sink in sleepingSinks { sink.wake() }
        sleepingSinks.removeAll(keepingCapacity: true)
        unwokenDeliveries = 0
    }

    static let wakeBatchLimit = 256
    static let wakeBatchDelay = Duration.microseconds(200)

    /// Runs the jobs of tasks that prefer this thread (``IOThreadExecutor``). A job may queue
    /// more (the next step of a task it resumed); a bound keeps the socket in its turn.
    func runJobs() {
        for _ in 0..<Self.jobRoundsPerTurn {
            let jobs = shared.inbox.takeJobs()
            if jobs.isEmpty { return }
            for job in jobs { shared.executor.run(job) }
        }
    }

    static let jobRoundsPerTurn = 8

    /// Sends this turn's acks (coalesced) and everything else the connection queued.
    func flushAcksAndOutput() {
        flushAcks()
        flushOutput()
    }

    /// Sends the frames the connection queued this turn (see `AMQPConnection.flush()`).
    func flushOutput() {
        guard let connection, connection.hasQueuedOutput else { return }
        do {
            try connection.flush()
        } catch {
            lose(error)
        }
    }

    func waitForWork(until callDeadline: ContinuousClock.Instant?) {
        socketMayBeReadable = true
        wakeConsumers()
        runJobs()
        // Forwards settled by the confirms just read acknowledge their deliveries before any sleep,
        // and nothing queued waits for the next wake-up.
        flushAcksAndOutput()
        if !sleepingSinks.isEmpty { return }
        if let connection, connection.hasBufferedInput { return }
        guard shared.inbox.prepareToSleep() else { return }

        var timeout = Duration.seconds(1)
        if let callDeadline {
            // Rounded up, so that the deadline has passed when poll returns.
            timeout = min(timeout, max(.zero, callDeadline - .now) + .milliseconds(1))
        }
        if connection != nil, heartbeat > .zero {
            timeout = min(timeout, heartbeat / 4)
        }
        if let next = machine.nextAttemptAt {
            timeout = min(timeout, max(.zero, next - .now))
        }
        var descriptors = [pollfd(fd: shared.inbox.pollDescriptor, events: Int16(POLLIN), revents: 0)]
        if let connection {
            descriptors.append(pollfd(fd: connection.socketDescriptor, events: Int16(POLLIN), revents: 0))
        }
        let milliseconds = Int32(clamping: timeout.wholeMilliseconds)
        _ = poll(&descriptors, nfds_t(descriptors.count), milliseconds)
        shared.inbox.finishedSleeping(woken: descriptors[0].revents != 0)
        socketMayBeReadable = descriptors.count > 1 && descriptors[1].revents != 0
        if socketMayBeReadable {
            lastReceive = .now
        }
    }
}
