import BusCore
import NodeProtocol

/// What the task running for a node said when asked (`requestProfile`/`requestProperties` on `on.task`).
public enum ActiveTaskAnswer: Sendable, Equatable {
    /// The node has no active graph.
    case noGraph
    /// A graph is active but no task answered with a profile (between tasks, or a task without one).
    case noProfile
    /// The running task's profile and its rendered options.
    case profile(String, properties: [String: JSONValue])
}

/// The iPXE script a node gets: a template and the options it is rendered with.
public struct BootScript: Sendable, Equatable {
    public var template: String
    public var options: [String: JSONValue]

    public init(template: String, options: [String: JSONValue] = [:]) {
        self.template = template
        self.options = options
    }
}

/// The answer to `GET /profiles`.
public enum BootDecision: Sendable, Equatable {
    /// Serve this script.
    case serve(BootScript)
    /// Register the machine, start the discovery graph for it, and decide again with what its
    /// first task answers.
    case discover
}

/// Names of the built-in templates the decision picks.
public enum BootTemplateName {
    public static let bootLocal = "boot-local.ipxe"
    public static let wait = "wait.ipxe"
    public static let ignore = "ignore.ipxe"
    public static let discovery = "discovery.ipxe"
    public static let catalogStored = "catalog-stored.ipxe"
}

/// What a node boots: a pure function of the node (nil when the registry does not know the
/// machine), the policy for unknown machines, and what its active task answered.
public func bootDecision(node: Node?, unknownNodes policy: UnknownNodePolicy, activeTask: ActiveTaskAnswer) -> BootDecision {
    guard let node else {
        switch policy {
        case .discover: return .discover
        case .ignore: return .serve(BootScript(template: BootTemplateName.ignore))
        case .bootLocal: return .serve(BootScript(template: BootTemplateName.bootLocal))
        }
    }
    switch activeTask {
    case .profile(let profile, let properties):
        return .serve(BootScript(template: profile, options: properties))
    case .noProfile:
        return .serve(BootScript(template: BootTemplateName.wait))
    case .noGraph:
        if let settings = node.bootSettings, let profile = settings.profile, !profile.isEmpty {
            return .serve(BootScript(template: profile, options: settings.options))
        }
        return .serve(BootScript(template: BootTemplateName.bootLocal))
    }
}
