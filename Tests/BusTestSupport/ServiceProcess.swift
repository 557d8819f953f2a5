import Foundation
import Glibc
import Synchronization

/// A RackBus service running as its own process (`rackbus up --services …`), which a test can
/// kill with SIGKILL and start again.
public final class ServiceProcess: Sendable {
    private let process: Mutex<Process?> = Mutex(nil)
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
        let process = Process()
        process.executableURL = Self.executable
        process.arguments = ["up"] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        process.standardOutput = FileHandle.nullDevice
        if let logFile {
            if !FileManager.default.fileExists(atPath: logFile.path) {
                _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
            }
            let handle = try FileHandle(forWritingTo: logFile)
            handle.seekToEndOfFile()
            process.standardError = handle
        } else {
            process.standardError = FileHandle.nullDevice
        }
        try process.run()
        self.process.withLock { $0 = process }
    }

    /// The running process's id, if it was started.
    public var processIdentifier: Int32? { process.withLock { $0?.processIdentifier } }

    /// SIGKILL: no shutdown, no goodbye, as a crash.
    public func kill() async {
        guard let process = process.withLock({ $0 }) else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        await process.waitUntilExitOffPool()
    }

    public func stop() async {
        guard let process = process.withLock({ $0 }), process.isRunning else { return }
        process.terminate()
        await process.waitUntilExitOffPool()
    }
}

extension Process {
    /// Waits for the process to end on a thread of its own: `waitUntilExit` blocks, and the
    /// cooperative pool has only as many threads as cores.
    public func waitUntilExitOffPool() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread {
                self.waitUntilExit()
                continuation.resume()
            }.start()
        }
    }
}
