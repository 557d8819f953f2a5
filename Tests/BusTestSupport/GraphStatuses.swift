import BusCore
import WorkflowProtocol

/// Waits until no graph of `ids` is running, as its TaskGraphRunner's store says (an event can
/// be missed; the store cannot), and returns their statuses in the order of `ids`. Each call is
/// retried while no TaskGraphRunner answers (one restarting, or the broker away).
public func statuses(ofGraphs ids: [String], on bus: MessageBus, within timeout: Duration) async throws -> [String] {
    var statuses: [String] = []
    try await eventually(timeout: timeout, pollingEvery: .milliseconds(500)) {
        statuses = []
        for id in ids {
            let properties = try await retryingUntilAnswered(within: .seconds(30)) {
                try await bus.call(GetTaskGraphProperties(filter: GraphFilter(instanceId: id)), timeout: .seconds(2))
            }
            statuses.append(properties.status)
        }
        return !statuses.contains("running")
    }
    return statuses
}
