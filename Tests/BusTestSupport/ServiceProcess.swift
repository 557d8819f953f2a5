import Foundation
import Glibc
import Synchronization

/// A RackBus service running as its own process (`rackbus up --services …`), which a test can
/// kill with SIGKILL and start again.
public final class ServiceProcess: Sendable {
    private let process: Mutex<ChildProcess?> = Mutex(nil)
    public let arguments: [String]
    /// Where the process writes its log (standard error), if anywhere.
    public let logFile: URL?
    /// Variables set for the process on top of the test's environment.
    public let environment: [String: String]

    /// `rackbus` sits next to the test bundle in the build folder.
    public static var executable: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("rackbus")
    }

    public init(arguments: [String], logFile: URL? = nil, environment: [String: String] = [:]) {
        self.arguments = arguments
        self.logFile = logFile
        self.environment = environment
    }

    public func start() throws {
        let process = try ChildProcess(
            Self.executable.path, ["up"] + arguments,
            environment: ProcessInfo.processInfo.environment.merging(environment) { _, new in new },
            error: logFile?.path)
        self.process.withLock { $0 = process }
    }

    /// The running process's id, if it was started.
    public var processIdentifier: Int32? { process.withLock { $0?.processIdentifier } }

    /// SIGKILL: no shutdown, no goodbye, as a crash.
    public func kill() async {
        guard let process = process.withLock({ $0 }) else { return }
        process.signal(SIGKILL)
        await process.waitForExit()
    }

    /// SIGTERM, as systemd stops a service. One that has not ended 30 s later is killed, and the
    /// result says so: a service must shut down on SIGTERM.
    @discardableResult
    public func stop() async -> Bool {
        guard let process = process.withLock({ $0 }), process.isRunning else { return true }
        process.signal(SIGTERM)
        if await process.waitForExit(within: .seconds(30)) != nil { return true }
        TestBroker.logger.error("rackbus up \(arguments.joined(separator: " ")) did not end within 30 s of SIGTERM; killing it")
        process.signal(SIGKILL)
        await process.waitForExit()
        return false
    }
}
