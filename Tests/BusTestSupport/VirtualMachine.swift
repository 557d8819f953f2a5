import Foundation
import Glibc
import Synchronization

/// A network for a virtual machine: a namespace that holds a bridge and a tap device (the VM's
/// segment), joined to this host by a veth pair. The host end carries the server address, so the
/// services of the test serve the VM's segment from there, exactly as they would serve a rack's
/// provisioning network from the server's NIC.
public struct VirtualMachineNetwork: Sendable {
    public let namespace: String
    /// The veth end on the host, where DHCP, TFTP and HTTP listen.
    public let hostInterface: String
    public let tap: String
    public let serverAddress: String
    public let subnetPrefix: String

    /// Creates the network, runs `body`, and removes everything again, also when `body` throws.
    public static func with<Result: Sendable>(
        subnet: Int, _ body: @Sendable (VirtualMachineNetwork) async throws -> Result
    ) async throws -> Result {
        let tag = String(UUID().uuidString.prefix(6)).lowercased()
        let network = VirtualMachineNetwork(
            namespace: "rbvm-\(tag)", hostInterface: "rbvh-\(tag)", tap: "rbvt-\(tag)", serverAddress: "10.56.\(subnet).1",
            subnetPrefix: "10.56.\(subnet)")
        do {
            try await network.create()
            let result = try await body(network)
            await network.remove()
            return result
        } catch {
            await network.remove()
            throw error
        }
    }

    private var segmentEnd: String { "rbvn-" + hostInterface.dropFirst(5) }
    private let bridge = "br0"

    private func create() async throws {
        try await ip("netns", "add", namespace)
        try await ip("link", "add", hostInterface, "type", "veth", "peer", "name", segmentEnd)
        try await ip("link", "set", segmentEnd, "netns", namespace)
        try await ip("addr", "add", "\(serverAddress)/24", "dev", hostInterface)
        try await ip("link", "set", hostInterface, "up")
        try await inNamespace("ip", "link", "add", bridge, "type", "bridge")
        try await inNamespace("ip", "link", "set", segmentEnd, "master", bridge)
        try await inNamespace("ip", "tuntap", "add", "dev", tap, "mode", "tap")
        try await inNamespace("ip", "link", "set", tap, "master", bridge)
        for link in ["lo", segmentEnd, tap, bridge] { try await inNamespace("ip", "link", "set", link, "up") }
    }

    private func remove() async {
        // Deleting the namespace removes the bridge, the tap and its veth end, and with it the pair.
        _ = try? await ip("netns", "del", namespace)
        _ = try? await ip("link", "del", hostInterface)
    }

    @discardableResult
    private func ip(_ arguments: String...) async throws -> String {
        try await TestBroker.run("/usr/bin/env", ["ip"] + arguments)
    }

    @discardableResult
    private func inNamespace(_ arguments: String...) async throws -> String {
        try await TestBroker.run("/usr/bin/env", ["ip", "netns", "exec", namespace] + arguments)
    }

    /// Boots a VM on this network from its NIC: qemu with SeaBIOS and Debian's iPXE ROM for an
    /// e1000, under plain emulation (no KVM), with its serial console captured.
    public func bootVirtualMachine(mac: String, smbios: [String: String]) throws -> VirtualMachine {
        let fields = smbios.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.replacingOccurrences(of: ",", with: ",,"))" }
        return try VirtualMachine.start(
            "/usr/bin/env",
            [
                "ip", "netns", "exec", namespace, "qemu-system-x86_64", "-accel", "tcg", "-M", "pc", "-m", "128", "-nodefaults",
                "-nographic", "-serial", "stdio", "-boot", "order=n",
                "-smbios", (["type=1"] + fields).joined(separator: ","),
                "-netdev", "tap,id=n0,ifname=\(tap),script=no,downscript=no",
                "-device", "e1000,netdev=n0,mac=\(mac)",
            ])
    }
}

/// A running qemu whose serial console goes to a file the test can read.
public final class VirtualMachine: Sendable {
    private let process: ChildProcess
    public let consoleFile: URL

    static func start(_ executable: String, _ arguments: [String]) throws -> VirtualMachine {
        let console = FileManager.default.temporaryDirectory.appendingPathComponent("rackbus-vm-\(UUID().uuidString).console")
        // qemu reads the serial console's input from stdin: it gets nothing, never the test's terminal.
        let process = try ChildProcess(
            executable, arguments, environment: ProcessInfo.processInfo.environment, output: console.path, error: console.path)
        return VirtualMachine(process: process, consoleFile: console)
    }

    private init(process: ChildProcess, consoleFile: URL) {
        self.process = process
        self.consoleFile = consoleFile
    }

    /// What the machine has printed so far, without terminal escapes.
    public var console: String {
        let raw = (try? String(contentsOf: consoleFile, encoding: .utf8)) ?? ""
        return raw.replacingOccurrences(of: "\u{1B}\\[[0-9;?]*[A-Za-z]", with: "", options: .regularExpression)
            .replacingOccurrences(of: "\r", with: "")
    }

    /// Waits until the console shows `text`; throws with the console's tail otherwise.
    public func waitForConsole(_ text: String, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if console.contains(text) { return }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw TestFailure("the VM did not print \"\(text)\" within \(timeout); its console ends with:\n\(console.suffix(3000))")
    }

    /// Ends the machine (Debian's iPXE has no `poweroff`): SIGKILL, then waits for it.
    public func stop() async {
        process.signal(SIGKILL)
        await process.waitForExit()
    }

    deinit {
        process.signal(SIGKILL)
        try? FileManager.default.removeItem(at: consoleFile)
    }
}
