import Dispatch

/// Runs blocking file-system calls (stat, realpath, small reads) on a Dispatch queue, never on
/// Swift's cooperative pool, which has only as many threads as cores.
enum BlockingIO {
    private static let queue = DispatchQueue(label: "rackbus.http.blocking-io", attributes: .concurrent)

    static func run<Value: Sendable>(_ body: @escaping @Sendable () throws -> Value) async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }
}
