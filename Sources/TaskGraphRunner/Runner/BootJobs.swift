import BusCore
import NodeProtocol

// Jobs of the boot path: they follow what a node does over HTTP and ask the node registry, both
// over the bus.

/// `Job.Wait.Completion.Uri` (RackHD's `Task.Wait.Completion.Uri`): succeeds on the first
/// `http.response.<nodeId>` with a 2xx status whose `url` contains `completionUri`; fails after
/// `timeout` milliseconds. While it waits, its `profile` option is what the node boots (the task
/// runner answers `methods.requestProfile.<nodeId>` with it), so the profile is how the node is
/// told to call back.
struct WaitForCompletionURIJob: Job {
    static let name = "Job.Wait.Completion.Uri"

    func run(_ context: JobContext) async throws -> [String: JSONValue] {
        guard let node = context.task.nodeId, !node.isEmpty else { throw JobError("\(Self.name) needs a target node") }
        let completionURI = try context.requiredString("completionUri")
        let timeout = context.option("timeout")?.intValue ?? 600_000
        let responses = try await context.bus.subscribe(
            to: .events, patterns: [HTTPResponseEvent.routingKey(nodeId: node)], as: HTTPResponseEvent.self)
        context.logger.info(
            "waiting for the node to call back", metadata: ["task.id": "\(context.task.taskId)", "node.id": "\(node)", "uri": "\(completionURI)"])
        return try await context.firstDelivery(
            of: responses, timeoutMs: timeout, orFail: "node \(node) did not request \(completionURI) within \(timeout) ms"
        ) { response in
            Self.completes(response.message, completionURI: completionURI) ? ["completionUrl": .string(response.message.url)] : nil
        }
    }

    /// A 2xx answer to a URL that contains the completion URI.
    static func completes(_ response: HTTPResponseEvent, completionURI: String) -> Bool {
        (200..<300).contains(response.statusCode) && response.url.contains(completionURI)
    }
}

/// `Job.Sku.Assign`: asks the node registry to match its SKU rules against the node's catalogs
/// (`methods.assignSku`), which stores the result and announces `sku.assigned.<nodeId>`. A node
/// that matches no SKU still succeeds, with `sku: null` in the context, as RackHD's discovery did.
struct AssignSKUJob: Job {
    static let name = "Job.Sku.Assign"

    func run(_ context: JobContext) async throws -> [String: JSONValue] {
        guard let node = context.task.nodeId, !node.isEmpty else { throw JobError("\(Self.name) needs a target node") }
        let assigned = try await context.bus.call(AssignSKU(nodeId: node), timeout: .seconds(30))
        context.logger.info("SKU assigned", metadata: ["node.id": "\(node)", "sku": "\(assigned.sku ?? "none")"])
        return ["sku": assigned.sku.map(JSONValue.string) ?? .null]
    }
}
