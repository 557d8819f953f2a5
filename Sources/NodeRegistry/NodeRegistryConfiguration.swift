/// Everything the node registry needs.
public struct NodeRegistryConfiguration: Sendable, Equatable {
    /// SQLite file for nodes, catalogs and SKUs (`:memory:` keeps nothing).
    public var databasePath: String

    public init(databasePath: String = ".rackbus/nodes.sqlite") {
        self.databasePath = databasePath
    }

    /// The environment variables read by ``fromEnvironment(_:base:)``.
    public enum Key {
        public static let database = "RACKBUS_NODES_DATABASE"
    }

    /// Reads the `RACKBUS_NODES_*` variables over `base`; unset or empty ones keep `base`'s value.
    public static func fromEnvironment(_ environment: [String: String], base: NodeRegistryConfiguration = NodeRegistryConfiguration())
        -> NodeRegistryConfiguration
    {
        var configuration = base
        if let database = environment[Key.database], !database.isEmpty { configuration.databasePath = database }
        return configuration
    }
}
