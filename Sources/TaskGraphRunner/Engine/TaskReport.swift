import BusCore

/// A `task.finished.<taskId>` body as the engine takes it: a ``TaskFinished``, or, when it is not
/// one but names its task, that task, so that its end still reaches the Schedulers (the report
/// itself is dead-lettered). A body that names no task is left to the bus, which refuses it.
enum TaskReport: DirectJSONDecodable, Sendable {
    case finished(TaskFinished)
    case unreadable(taskId: String, error: String)

    init?(json: JSONValue) {
        guard let report = TaskFinished(json: json) else { return nil }
        self = .finished(report)
    }

    private enum CodingKeys: String, CodingKey {
        case taskId
    }

    init(from decoder: any Decoder) throws {
        do {
            self = .finished(try TaskFinished(from: decoder))
        } catch let error as DecodingError {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self = .unreadable(taskId: try container.decode(String.self, forKey: .taskId), error: RunMessage.describe(error))
        }
    }
}
