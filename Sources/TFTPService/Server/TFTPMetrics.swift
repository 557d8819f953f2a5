import Metrics
import Synchronization

/// Counters since start, for tests and tools in the same process.
public struct TFTPStatistics: Sendable, Equatable {
    public var succeeded = 0
    /// Transfers abandoned and requests refused (missing, access violation, busy).
    public var failed = 0
    /// Requests refused with "server busy".
    public var busy = 0
    /// Packets dropped or answered with an error because they were not a valid request or reply.
    public var invalidPackets = 0
    public var retransmittedBlocks = 0
    public var bytesSent = 0
    public var active = 0
    public var eventsDropped = 0
}

/// `rackbus_tftp_*` through swift-metrics, and the same counts as ``TFTPStatistics``.
final class TFTPMetrics: Sendable {
    private let statistics = Mutex(TFTPStatistics())
    private let counters = Mutex<[String: Counter]>([:])
    private let bytesSent = Counter(label: "rackbus_tftp_bytes_sent_total")
    private let retransmissions = Counter(label: "rackbus_tftp_retransmitted_blocks_total")
    private let activeGauge = Gauge(label: "rackbus_tftp_active_transfers")
    private let eventsDropped = Counter(label: "rackbus_tftp_events_dropped_total")

    var snapshot: TFTPStatistics { statistics.withLock { $0 } }

    private func counter(_ label: String, _ dimension: String, _ value: String) -> Counter {
        counters.withLock { counters in
            let key = label + "\u{0}" + value
            if let counter = counters[key] { return counter }
            let counter = Counter(label: label, dimensions: [(dimension, value)])
            counters[key] = counter
            return counter
        }
    }

    func invalidPacket(_ reason: String) {
        statistics.withLock { $0.invalidPackets += 1 }
        counter("rackbus_tftp_invalid_packets_total", "reason", reason).increment()
    }

    /// `result`: success, not_found, access_violation, busy, timeout, client_error, …
    func transferEnded(result: String, bytes: Int, retransmittedBlocks: Int) {
        statistics.withLock { statistics in
            if result == "success" { statistics.succeeded += 1 } else { statistics.failed += 1 }
            if result == "busy" { statistics.busy += 1 }
            statistics.bytesSent += bytes
            statistics.retransmittedBlocks += retransmittedBlocks
        }
        counter("rackbus_tftp_transfers_total", "result", result).increment()
        if bytes > 0 { bytesSent.increment(by: bytes) }
        if retransmittedBlocks > 0 { retransmissions.increment(by: retransmittedBlocks) }
    }

    func activeChanged(_ active: Int) {
        statistics.withLock { $0.active = active }
        activeGauge.record(active)
    }

    func eventDropped() {
        statistics.withLock { $0.eventsDropped += 1 }
        eventsDropped.increment()
    }
}
