import Metrics

/// The TaskGraphRunner's swift-metrics instruments: graphs started and ended, tasks ended (once
/// each: a duplicate report changes nothing and is not counted), messages the outbox sweep had to
/// send, and how long each job ran. Dimensions are bounded sets (statuses, states, job names).
struct WorkflowMetrics: Sendable {
    let graphsStarted: Counter
    let outboxResent: Counter
    private let graphsFinished: [GraphStatus: Counter]
    private let tasksFinished: [TaskState: Counter]
    private let factory: any MetricsFactory

    init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        graphsStarted = Counter(label: "rackbus_graphs_started_total", factory: factory)
        outboxResent = Counter(label: "rackbus_outbox_resent_total", factory: factory)
        var graphs: [GraphStatus: Counter] = [:]
        for status in [GraphStatus.succeeded, .failed, .cancelled] {
            graphs[status] = Counter(label: "rackbus_graphs_finished_total", dimensions: [("status", status.rawValue)], factory: factory)
        }
        graphsFinished = graphs
        var tasks: [TaskState: Counter] = [:]
        for state in TaskState.allCases where state.isFinished {
            tasks[state] = Counter(label: "rackbus_tasks_finished_total", dimensions: [("state", state.rawValue)], factory: factory)
        }
        tasksFinished = tasks
    }

    func graphFinished(_ status: GraphStatus) {
        graphsFinished[status]?.increment()
    }

    func taskFinished(_ state: TaskState) {
        tasksFinished[state]?.increment()
    }

    /// How long a job ran, by job.
    func jobDuration(_ job: String) -> Metrics.Timer {
        Metrics.Timer(label: "rackbus_task_duration_seconds", dimensions: [("job", job)], factory: factory)
    }
}
