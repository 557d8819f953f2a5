import BusCore
import Foundation
import Glibc
import Testing

@Suite("The engine's wake-up pipe", .timeLimit(.minutes(1)))
struct WakePipeTests {
    /// Runs in a child process (an exit test): exhausting the descriptor table in the test
    /// runner's own process would break whatever else runs beside it.
    @Test("without a free file descriptor, a bus throws a BusError rather than trapping")
    func outOfFileDescriptors() async {
        await #expect(processExitsWith: .success) {
            var limit = rlimit()
            guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { exit(10) }
            limit.rlim_cur = min(limit.rlim_max, 256)
            guard setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { exit(11) }
            var held: [Int32] = []
            while true {
                let descriptor = open("/dev/null", O_RDONLY)
                if descriptor < 0 { break }
                held.append(descriptor)
            }
            defer { for descriptor in held { close(descriptor) } }
            guard errno == EMFILE else { exit(12) }

            // Nothing listens on port 1: the bus must fail before it ever tries to connect.
            let bus = MessageBus(configuration: try BusConfiguration(url: "amqp://guest:guest@127.0.0.1:1/"))
            do throws(BusError) {
                try await bus.run()
                exit(13)
            } catch {
                guard error.code == .resourceExhausted, error.message.contains("file descriptor") else { exit(14) }
            }
        }
    }
}
