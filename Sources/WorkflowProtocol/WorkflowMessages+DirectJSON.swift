import BusCore

// The bodies that every task sends and reads, written and read without Foundation's generic
// coders (see `DirectJSONEncodable`). Keys go out in the order of the synthesized `Encodable`
// conformances, which stay the reference: `DirectJSONTests` holds the two to the same JSON.

extension TaskSpec: DirectJSONEncodable, DirectJSONObjectDecodable {
    public func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        writer.member("taskId", taskId)
        writer.member("graphId", graphId)
        writer.member("graphName", graphName)
        writer.member("label", label)
        writer.member("taskName", taskName)
        writer.member("job", job)
        try writer.member("options", options)
        try writer.member("context", context)
        writer.member("nodeId", nodeId)
        writer.member("timeoutMs", timeoutMs)
        try writer.member("overrides", overrides)
        writer.endObject()
    }

    public init(members json: JSONMembers) throws(JSONMembers.Mismatch) {
        self.init(
            taskId: try json.string("taskId"), graphId: try json.string("graphId"), graphName: try json.string("graphName"),
            label: try json.string("label"), taskName: try json.string("taskName"), job: try json.string("job"),
            options: try json.object("options"), context: try json.object("context"), nodeId: try json.optionalString("nodeId"),
            timeoutMs: try json.int("timeoutMs"), overrides: try json.optionalObject("overrides"))
    }
}

extension TaskFinished: DirectJSONEncodable, DirectJSONObjectDecodable {
    public func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        writer.member("taskId", taskId)
        writer.member("taskName", taskName)
        writer.member("label", label)
        writer.member("graphId", graphId)
        writer.member("graphName", graphName)
        writer.member("state", state)
        writer.member("error", error)
        try writer.member("context", context)
        writer.endObject()
    }

    public init(members json: JSONMembers) throws(JSONMembers.Mismatch) {
        self.init(
            taskId: try json.string("taskId"), taskName: try json.string("taskName"), label: try json.string("label"),
            graphId: try json.string("graphId"), graphName: try json.string("graphName"), state: try json.raw("state"),
            error: try json.optionalString("error"), context: try json.optionalObject("context"))
    }
}

extension TaskCancellation: DirectJSONEncodable, DirectJSONObjectDecodable {
    public func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        writer.member("taskId", taskId)
        writer.member("errName", errName)
        writer.member("errMessage", errMessage)
        writer.endObject()
    }

    public init(members json: JSONMembers) throws(JSONMembers.Mismatch) {
        self.init(
            taskId: try json.string("taskId"), errName: try json.optionalString("errName"),
            errMessage: try json.optionalString("errMessage"))
    }
}

extension TasksEnded: DirectJSONEncodable, DirectJSONObjectDecodable {
    public func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        writer.key("taskIds")
        writer.beginArray()
        for taskId in taskIds { writer.string(taskId) }
        writer.endArray()
        writer.endObject()
    }

    public init(members json: JSONMembers) throws(JSONMembers.Mismatch) {
        self.init(taskIds: try json.stringArray("taskIds"))
    }
}

extension GraphEvent: DirectJSONEncodable, DirectJSONObjectDecodable {
    public func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        writer.member("graphId", graphId)
        writer.member("graphName", graphName)
        writer.member("status", status)
        writer.member("nodeId", nodeId)
        writer.endObject()
    }

    public init(members json: JSONMembers) throws(JSONMembers.Mismatch) {
        self.init(
            graphId: try json.string("graphId"), graphName: try json.string("graphName"), status: try json.string("status"),
            nodeId: try json.optionalString("nodeId"))
    }
}

extension GraphProgress: DirectJSONEncodable {
    public func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        writer.member("graphId", graphId)
        writer.member("graphName", graphName)
        writer.member("nodeId", nodeId)
        writer.member("finishedTasks", finishedTasks)
        writer.member("totalTasks", totalTasks)
        writer.member("taskId", taskId)
        writer.member("label", label)
        writer.member("taskState", taskState)
        writer.endObject()
    }
}

// `methods.runTaskGraph`, once per graph: its request and its reply.

extension RunTaskGraph: DirectJSONEncodable, DirectJSONObjectDecodable {
    public func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        writer.member("name", name)
        try writer.member("options", options)
        writer.member("target", target)
        writer.member("idempotencyKey", idempotencyKey)
        writer.endObject()
    }

    public init(members json: JSONMembers) throws(JSONMembers.Mismatch) {
        self.init(
            name: try json.string("name"), options: try json.optionalObject("options"), target: try json.optionalString("target"),
            idempotencyKey: try json.optionalString("idempotencyKey"))
    }
}

extension GraphSummary: DirectJSONEncodable, DirectJSONObjectDecodable {
    public func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        writer.member("instanceId", instanceId)
        writer.member("name", name)
        writer.member("friendlyName", friendlyName)
        writer.member("status", status)
        writer.member("target", target)
        writer.member("createdAt", createdAt)
        writer.key("tasks")
        writer.beginObject()
        for (id, task) in tasks {
            writer.key(id)
            writer.beginObject()
            writer.member("label", task.label)
            writer.member("name", task.name)
            writer.member("state", task.state)
            writer.endObject()
        }
        writer.endObject()
        writer.endObject()
    }

    public init(members json: JSONMembers) throws(JSONMembers.Mismatch) {
        var tasks: [String: TaskSummary] = [:]
        for (id, value) in try json.object("tasks") {
            let task = try JSONMembers(value)
            tasks[id] = TaskSummary(label: try task.string("label"), name: try task.string("name"), state: try task.raw("state"))
        }
        self.init(
            instanceId: try json.string("instanceId"), name: try json.string("name"), friendlyName: try json.string("friendlyName"),
            status: try json.string("status"), target: try json.optionalString("target"), createdAt: try json.string("createdAt"),
            tasks: tasks)
    }
}
