import Metrics

/// The bus's swift-metrics instruments. Labels are constants so that dashboards can rely on them;
/// per-call dimensions are the exchange and the method (never a node or task id).
struct BusMetrics: Sendable {
    let reconnects = Counter(label: "rackbus_bus_reconnects_total")
    let connected = Gauge(label: "rackbus_bus_connected")
    let lateReplies = Counter(label: "rackbus_rpc_late_replies_total")
    let droppedPublishes = Counter(label: "rackbus_bus_dropped_operations_total")
    let undecodable = Counter(label: "rackbus_bus_undecodable_messages_total")
    let expiredRequests = Counter(label: "rackbus_rpc_expired_requests_total")

    func call(exchange: String, method: String) -> CallMetrics {
        CallMetrics(
            calls: Counter(label: "rackbus_rpc_calls_total", dimensions: [("exchange", exchange), ("method", method)]),
            errors: { kind in
                Counter(label: "rackbus_rpc_errors_total", dimensions: [("exchange", exchange), ("method", method), ("kind", kind)])
            },
            latency: Metrics.Timer(label: "rackbus_rpc_duration_seconds", dimensions: [("exchange", exchange), ("method", method)])
        )
    }

    func served(exchange: String, method: String) -> ServedMetrics {
        ServedMetrics(
            requests: Counter(label: "rackbus_rpc_served_total", dimensions: [("exchange", exchange), ("method", method)]),
            failures: Counter(label: "rackbus_rpc_served_errors_total", dimensions: [("exchange", exchange), ("method", method)]),
            latency: Metrics.Timer(label: "rackbus_rpc_handler_duration_seconds", dimensions: [("exchange", exchange), ("method", method)])
        )
    }
}

struct CallMetrics: Sendable {
    let calls: Counter
    let errors: @Sendable (String) -> Counter
    let latency: Metrics.Timer
}

struct ServedMetrics: Sendable {
    let requests: Counter
    let failures: Counter
    let latency: Metrics.Timer
}
