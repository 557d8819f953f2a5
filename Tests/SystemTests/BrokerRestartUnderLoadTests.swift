import BusCore
import BusTestSupport
import Foundation
import Testing

/// One broker (not a cluster) restarts while graphs run and calls go on.
// The limit includes waiting to hold the broker alone, behind the cluster tests.
@Suite("A single broker restarts under load", .timeLimit(.minutes(10)))
struct BrokerRestartUnderLoadTests {
    @Test("every graph succeeds, no task starts twice, and RPCs answer within 2 s of the broker's return")
    func restartUnderLoad() async throws {
        try await TestBroker.withExclusiveBroker {
            let configuration = try TestBroker.configuration()
            // The broker is back when restart-app returns: the calls must answer within 2 s of that.
            let outcome = try await FailoverUnderLoad.run(configuration: configuration, url: TestBroker.url) { _ in
                try await TestBroker.brokerScript("restart-app")
            }
            FailoverUnderLoad.check(outcome, graphs: 40)
        }
    }
}
