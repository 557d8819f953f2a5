import BusCore

/// RackHD's option merging (task-graph.js `_buildTaskDefinition`), as pure functions.
enum GraphOptionsMerge {
    /// Objects merge key by key, recursively; any other overlay value (arrays and `null` included)
    /// replaces what was there.
    static func deepMerged(_ base: [String: JSONValue], with overlay: [String: JSONValue]) -> [String: JSONValue] {
        var result = base
        for (key, value) in overlay {
            if case .object(let overlayObject) = value, case .object(let baseObject)? = result[key] {
                result[key] = .object(deepMerged(baseObject, with: overlayObject))
            } else {
                result[key] = value
            }
        }
        return result
    }

    /// A task's options, last wins: its definition's `options`, the graph task's `optionOverrides`,
    /// the graph's `options.defaults`, then `options.<label>`.
    static func taskOptions(
        definition: TaskDefinition, baseTask: TaskDefinition, label: String, optionOverrides: [String: JSONValue]?,
        graphOptions: [String: JSONValue]
    ) -> [String: JSONValue] {
        var options = deepMerged(definition.options ?? [:], with: optionOverrides ?? [:])

        // A schema decides for itself which options it accepts; without one RackHD only offers a
        // default to a task that already declares the option.
        let acceptsEveryDefault = definition.optionsSchema != nil || baseTask.optionsSchema != nil
        let declaredOptions = Set(options.keys).union(baseTask.requiredOptions ?? [])
        for (key, value) in object(graphOptions["defaults"]) where acceptsEveryDefault || declaredOptions.contains(key) {
            options[key] = value
        }

        for (key, value) in object(graphOptions[label]) {
            // A per-label null is a "supply me" placeholder: it must not erase a real value.
            if value == .null, let existing = options[key], existing != .null { continue }
            options[key] = value
        }
        return options
    }

    private static func object(_ value: JSONValue?) -> [String: JSONValue] {
        if case .object(let object)? = value { return object }
        return [:]
    }
}
