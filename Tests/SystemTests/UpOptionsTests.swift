import BusTestSupport
import Testing

/// `rackbus up` refuses bad settings before it starts anything, naming what is wrong.
@Suite("rackbus up options")
struct UpOptionsTests {
    @Test(
        "bad values exit non-zero with the reason",
        arguments: [
            (["--events-log-format", "xml"], "unknown events log format \"xml\""),
            (["--events-log-level", "loud"], "unknown events log level \"loud\""),
            (["--metrics-listen", "9180"], "expected HOST:PORT"),
            (["--services", "dhcp,ftp"], "unknown services: ftp"),
            (["--services", "http", "--http-api-listen", "0.0.0.0:8080"], "without a token"),
            (["--scheduler-concurrency", "0"], "the scheduler concurrency must be positive"),
        ])
    func refused(arguments: [String], reason: String) async throws {
        let failure = await #expect(throws: TestFailure.self) {
            _ = try await TestBroker.run(ServiceProcess.executable.path, ["up", "--url", TestBroker.url] + arguments)
        }
        #expect(failure?.description.contains(reason) == true, "\(failure?.description ?? "")")
    }
}
