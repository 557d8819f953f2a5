import BusCore

/// Turns a graph definition into a `GraphPlan`, checking it the way RackHD's `TaskGraph` does
/// (on-tasks `lib/task-graph.js`) and failing with RackHD's messages.
public enum GraphCompiler {
    /// `options` are the run request's options (e.g. {"defaults": {"nodeId": "n1"}, "<label>": {...}}),
    /// deep-merged over the definition's.
    public static func compile(
        _ definition: GraphDefinition, library: TaskLibrary, options: [String: JSONValue] = [:]
    ) throws(GraphDefinitionError) -> GraphPlan {
        let graphOptions = GraphOptionsMerge.deepMerged(definition.options ?? [:], with: options)

        // RackHD's order: labels, task lookups, each task against its base task, waitOn targets, cycles.
        try checkLabels(of: definition.tasks)
        var taskDefinitions: [TaskDefinition] = []
        for task in definition.tasks {
            taskDefinitions.append(try taskDefinition(of: task, in: library))
        }
        var compiled: [CompiledTask] = []
        for (task, taskDefinition) in zip(definition.tasks, taskDefinitions) {
            compiled.append(try compileTask(task, taskDefinition, library: library, graph: definition, graphOptions: graphOptions))
        }
        try checkWaitOnTargets(of: definition.tasks)
        try checkForCycles(in: definition.tasks)

        let nonTerminalStates = statesWaitedOn(in: definition.tasks)
        for index in compiled.indices {
            let waitedOn = nonTerminalStates[compiled[index].label] ?? []
            compiled[index].terminalOnStates = finishedStates.filter { !waitedOn.contains($0) }
        }
        return GraphPlan(definition: definition, options: graphOptions, tasks: compiled)
    }

    /// What `defineTaskGraph` checks: everything `compile` does, without a run request's options.
    public static func validate(_ definition: GraphDefinition, library: TaskLibrary) throws(GraphDefinitionError) {
        _ = try compile(definition, library: library)
    }

    /// Constants.Task.FinishedStates, sorted by rawValue.
    static let finishedStates: [TaskState] = TaskState.allCases.filter(\.isFinished).sorted { $0.rawValue < $1.rawValue }

    // MARK: - Checks

    private static func checkLabels(of tasks: [GraphTask]) throws(GraphDefinitionError) {
        var seen: Set<String> = []
        for task in tasks {
            // `anyOf` would be read as the OR group inside another task's waitOn.
            if task.label == "anyOf" { throw .reservedAnyOfLabel }
            if !seen.insert(task.label).inserted { throw .duplicateLabel(task.label) }
        }
    }

    private static func taskDefinition(of task: GraphTask, in library: TaskLibrary) throws(GraphDefinitionError) -> TaskDefinition {
        switch (task.resolvedTaskName, task.taskDefinition) {
        case (let name?, nil):
            guard let definition = library.definition(named: name) else { throw .unknownTask(name) }
            return definition
        case (nil, let inline?):
            return inline
        default:
            throw .taskNameOrDefinition
        }
    }

    private static func compileTask(
        _ task: GraphTask, _ definition: TaskDefinition, library: TaskLibrary, graph: GraphDefinition, graphOptions: [String: JSONValue]
    ) throws(GraphDefinitionError) -> CompiledTask {
        guard let baseName = definition.implementsTask else { throw .missingField("implementsTask") }
        guard let baseTask = library.baseTask(implementedBy: definition) else { throw .unknownBaseTask(baseName) }
        guard let runJob = baseTask.runJob else { throw .missingField("runJob") }

        let options = GraphOptionsMerge.taskOptions(
            definition: definition, baseTask: baseTask, label: task.label, optionOverrides: task.optionOverrides, graphOptions: graphOptions
        )
        // Only a missing or null value is missing: a `{{…}}` template is rendered later, by the runner.
        for option in baseTask.requiredOptions ?? [] where options[option] == nil || options[option] == .null {
            throw .missingRequiredOption(option, task: definition.injectableName, graph: graph.injectableName)
        }

        return CompiledTask(
            label: task.label,
            taskName: definition.injectableName,
            friendlyName: definition.friendlyName,
            runJob: runJob,
            options: options,
            properties: GraphOptionsMerge.deepMerged(baseTask.properties ?? [:], with: definition.properties ?? [:]),
            waitOn: collapsingFinished(task.waitOn ?? WaitOn()),
            ignoreFailure: task.ignoreFailure ?? false
        )
    }

    private static func checkWaitOnTargets(of tasks: [GraphTask]) throws(GraphDefinitionError) {
        let labels = Set(tasks.map(\.label))
        for task in tasks {
            for upstream in upstreamLabels(of: task) where !labels.contains(upstream) {
                throw .missingWaitOnTask(upstream)
            }
        }
    }

    private enum VisitMark { case temporary, permanent }

    /// Depth-first from every task towards what it waits on; reaching a task still being visited
    /// closes a cycle.
    private static func checkForCycles(in tasks: [GraphTask]) throws(GraphDefinitionError) {
        let tasksByLabel = Dictionary(tasks.map { ($0.label, $0) }, uniquingKeysWith: { first, _ in first })
        var marks: [String: VisitMark] = [:]
        for task in tasks {
            try visit(task.label, waitedOnBy: nil, tasksByLabel: tasksByLabel, marks: &marks)
        }
    }

    private static func visit(
        _ label: String, waitedOnBy downstream: String?, tasksByLabel: [String: GraphTask], marks: inout [String: VisitMark]
    ) throws(GraphDefinitionError) {
        switch marks[label] {
        case .temporary: throw .cycle(label, downstream ?? label)
        case .permanent: return
        case nil: break
        }
        marks[label] = .temporary
        if let task = tasksByLabel[label] {
            for upstream in upstreamLabels(of: task) {
                try visit(upstream, waitedOnBy: label, tasksByLabel: tasksByLabel, marks: &marks)
            }
        }
        marks[label] = .permanent
    }

    // MARK: - Shape

    /// The labels a task waits on, `all` before `anyOf`, each part sorted so that errors are deterministic.
    private static func upstreamLabels(of task: GraphTask) -> [String] {
        guard let waitOn = task.waitOn else { return [] }
        return waitOn.all.keys.sorted() + (waitOn.anyOf?.keys.sorted() ?? [])
    }

    /// For every upstream label, the finished states some downstream task waits for (`finished` = all four).
    private static func statesWaitedOn(in tasks: [GraphTask]) -> [String: Set<TaskState>] {
        var waitedOn: [String: Set<TaskState>] = [:]
        for task in tasks {
            guard let waitOn = task.waitOn else { continue }
            for (upstream, waits) in waitOn.all.merging(waitOn.anyOf ?? [:], uniquingKeysWith: +) {
                let states = finishedStates.filter { state in waits.contains { $0.isSatisfied(by: state) } }
                waitedOn[upstream, default: []].formUnion(states)
            }
        }
        return waitedOn
    }

    /// RackHD rewrites a list that names `finished` to just `[finished]`.
    private static func collapsingFinished(_ waitOn: WaitOn) -> WaitOn {
        func collapse(_ waits: [WaitState]) -> [WaitState] { waits.contains(.finished) ? [.finished] : waits }
        return WaitOn(all: waitOn.all.mapValues(collapse), anyOf: waitOn.anyOf?.mapValues(collapse))
    }
}
