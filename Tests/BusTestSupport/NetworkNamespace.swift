import Foundation

/// A "node" for DHCP tests: a network namespace joined to this host by a veth pair. The DHCP
/// server serves on the host end; a real client (busybox udhcpc) runs inside the namespace.
public struct NetworkNamespace: Sendable {
    public let name: String
    /// The veth end on the host, where the server listens.
    public let hostInterface: String
    /// The veth end inside the namespace, where the client runs.
    public let nodeInterface: String
    public let serverAddress: String

    /// Creates the namespace, runs `body`, and removes everything again, also when `body` throws.
    public static func with<Result: Sendable>(
        subnet: Int, _ body: @Sendable (NetworkNamespace) async throws -> Result
    ) async throws -> Result {
        let tag = String(UUID().uuidString.prefix(6)).lowercased()
        let namespace = NetworkNamespace(
            name: "rbns-\(tag)", hostInterface: "rbh-\(tag)", nodeInterface: "rbn-\(tag)", serverAddress: "10.55.\(subnet).1")
        do {
            try await namespace.create()
            let result = try await body(namespace)
            await namespace.remove()
            return result
        } catch {
            await namespace.remove()
            throw error
        }
    }

    private func create() async throws {
        try await ip("netns", "add", name)
        try await ip("link", "add", hostInterface, "type", "veth", "peer", "name", nodeInterface)
        try await ip("link", "set", nodeInterface, "netns", name)
        try await ip("addr", "add", "\(serverAddress)/24", "dev", hostInterface)
        try await ip("link", "set", hostInterface, "up")
        try await ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        try await ip("netns", "exec", name, "ip", "link", "set", nodeInterface, "up")
    }

    private func remove() async {
        // Deleting the namespace removes its veth end, and with it the pair.
        _ = try? await ip("netns", "del", name)
        _ = try? await ip("link", "del", hostInterface)
    }

    /// Gives the node's interface a MAC (the client's identity to the server).
    public func setMAC(_ mac: String) async throws {
        try await ip("netns", "exec", name, "ip", "link", "set", "dev", nodeInterface, "down")
        try await ip("netns", "exec", name, "ip", "link", "set", "dev", nodeInterface, "address", mac)
        try await ip("netns", "exec", name, "ip", "link", "set", "dev", nodeInterface, "up")
    }

    /// Runs busybox udhcpc once in the namespace; returns the variables of its `bound` event,
    /// or nil if it got no lease.
    public func requestLease(hostname: String = "rackbus-node", requestedIP: String? = nil, attempts: Int = 4) async throws -> [String:
        String]?
    {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-udhcpc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = directory.appendingPathComponent("event.sh")
        // udhcpc runs the script with the event in $1 and the lease in its environment.
        try "#!/bin/sh\nenv > \"\(directory.path)/$1.env\"\nexit 0\n".write(to: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
        var arguments = [
            "netns", "exec", name, "busybox", "udhcpc", "-i", nodeInterface, "-f", "-q", "-n", "-t", String(attempts), "-T", "1", "-A", "1",
            "-s", script.path, "-x", "hostname:\(hostname)",
        ]
        if let requestedIP { arguments += ["-r", requestedIP] }
        _ = try? await TestBroker.run("/usr/bin/env", ["ip"] + arguments)
        guard let text = try? String(contentsOf: directory.appendingPathComponent("bound.env"), encoding: .utf8) else { return nil }
        var variables: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            variables[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return variables
    }

    @discardableResult
    private func ip(_ arguments: String...) async throws -> String {
        try await TestBroker.run("/usr/bin/env", ["ip"] + arguments)
    }
}
