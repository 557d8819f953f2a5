/// What RackBus does with a machine whose MAC no node has, on the boot path. One setting for
/// the whole system (`RACKBUS_UNKNOWN_NODES`), read by DHCPService and the HTTP service.
public enum UnknownNodePolicy: String, Sendable, Codable, CaseIterable {
    /// Register it and run the discovery graph (the default).
    case discover
    /// Leave it alone: DHCP gives it an address but no boot file, and the HTTP service hands it
    /// back to its firmware.
    case ignore
    /// Tell it to boot from its local disk, without registering it.
    case bootLocal = "boot-local"

    public static let environmentKey = "RACKBUS_UNKNOWN_NODES"

    /// The policy in `environment`, `discover` when unset; nil when the value is not a policy.
    public static func fromEnvironment(_ environment: [String: String]) -> UnknownNodePolicy? {
        guard let text = environment[environmentKey], !text.isEmpty else { return .discover }
        return UnknownNodePolicy(rawValue: text)
    }
}

/// The URL nodes use to reach the HTTP boot service (`RACKBUS_BOOT_HTTP_URL`): TFTP's `boot.ipxe`
/// chains to it, DHCP hands it to UEFI HTTP boot clients, the HTTP service renders it into profiles.
public enum BootURL {
    public static let environmentKey = "RACKBUS_BOOT_HTTP_URL"
    public static let defaultValue = "http://172.31.128.1:9080"

    public static func fromEnvironment(_ environment: [String: String]) -> String {
        let value = environment[environmentKey] ?? ""
        let url = value.isEmpty ? defaultValue : value
        return url.hasSuffix("/") ? String(url.dropLast()) : url
    }
}
