import BusCore

// Definitions are written into every graph's stored header: directly, as their `Encodable`
// conformances write them (`DirectJSONTests`).

extension WaitOn: DirectJSONEncodable {
    public func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        Self.write(all, into: &writer)
        if let anyOf {
            writer.key("anyOf")
            writer.beginObject()
            Self.write(anyOf, into: &writer)
            writer.endObject()
        }
        writer.endObject()
    }

    /// One state as a string, several as a list, labels sorted.
    private static func write(_ group: [String: [WaitState]], into writer: inout JSONWriter) {
        for (label, states) in group.sorted(by: { $0.key < $1.key }) {
            writer.key(label)
            if states.count == 1 {
                writer.string(states[0].rawValue)
            } else {
                writer.beginArray()
                for state in states { writer.string(state.rawValue) }
                writer.endArray()
            }
        }
    }
}

extension TaskDefinition: DirectJSONEncodable {
    public func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        writer.member("friendlyName", friendlyName)
        writer.member("injectableName", injectableName)
        writer.member("implementsTask", implementsTask)
        writer.member("runJob", runJob)
        if let requiredOptions {
            writer.key("requiredOptions")
            writer.beginArray()
            for option in requiredOptions { writer.string(option) }
            writer.endArray()
        }
        try writer.member("requiredProperties", requiredProperties)
        try writer.member("options", options)
        try writer.member("properties", properties)
        try writer.member("optionsSchema", optionsSchema)
        writer.endObject()
    }
}

extension GraphTask: DirectJSONEncodable {
    public func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        writer.member("label", label)
        writer.member("taskName", taskName)
        if let taskDefinition {
            writer.key("taskDefinition")
            try taskDefinition.writeJSON(into: &writer)
        }
        if let waitOn {
            writer.key("waitOn")
            try waitOn.writeJSON(into: &writer)
        }
        if let ignoreFailure { writer.member("ignoreFailure", ignoreFailure) }
        try writer.member("optionOverrides", optionOverrides)
        writer.endObject()
    }
}

extension GraphDefinition: DirectJSONEncodable {
    public func writeJSON(into writer: inout JSONWriter) throws(JSONWriter.Unrepresentable) {
        writer.beginObject()
        writer.member("friendlyName", friendlyName)
        writer.member("injectableName", injectableName)
        try writer.member("options", options)
        writer.key("tasks")
        writer.beginArray()
        for task in tasks { try task.writeJSON(into: &writer) }
        writer.endArray()
        if let serviceGraph { writer.member("serviceGraph", serviceGraph) }
        writer.endObject()
    }
}
