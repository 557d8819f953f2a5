import Logging

// MARK: Shutdown

extension EngineLoop {
    /// Graceful shutdown sends what callers already handed over (publishes, acks) and waits a
    /// little for outstanding publisher confirms; requests that need a reply are failed instead.
    func shutDown(incoming: [EngineCommand]) {
        let handedOver = incoming.map { (id: park($0), kind: $0.kind) }
        perform(machine.shutdownRequested(incoming: handedOver))
        perform(machine.drained())
        // Tasks that ran here carry on elsewhere: the inbox takes no jobs any more.
        for job in shared.inbox.takeJobs() {
            SpareJobThread.shared.enqueue(job, on: shared.executor.asUnownedTaskExecutor())
        }
        logger.debug("bus I/O thread stopped")
    }

    func awaitConfirms(patience: Duration) {
        let deadline = ContinuousClock.now + patience
        while confirms.count > 0, connection != nil, ContinuousClock.now < deadline {
            flushOutput()
            socketMayBeReadable = true
            pumpInbound()
            if confirms.count > 0, let connection {
                _ = connection.waitUntilReadable(milliseconds: 50)
            }
        }
        // What the confirms settled (forwarded deliveries) is acknowledged before the connection closes.
        flushAcksAndOutput()
    }
}
