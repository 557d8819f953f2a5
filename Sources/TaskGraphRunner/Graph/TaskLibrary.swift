/// The task definitions a graph may name: tasks and the base tasks they implement, by injectableName.
public struct TaskLibrary: Sendable {
    public var definitions: [String: TaskDefinition]

    /// A later definition with the same injectableName replaces an earlier one.
    public init(_ definitions: [TaskDefinition]) {
        self.definitions = Dictionary(definitions.map { ($0.injectableName, $0) }, uniquingKeysWith: { _, last in last })
    }

    public func definition(named injectableName: String) -> TaskDefinition? {
        definitions[injectableName]
    }

    /// The base task `definition` implements; RackHD only accepts a definition without `implementsTask`.
    func baseTask(implementedBy definition: TaskDefinition) -> TaskDefinition? {
        guard let name = definition.implementsTask, let base = definitions[name], base.implementsTask == nil else { return nil }
        return base
    }
}
