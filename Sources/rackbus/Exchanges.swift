import ArgumentParser
import BusCore

struct Exchanges: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the nine exchanges of the conventions and their routing keys.")

    @OptionGroup var bus: BusOptions

    @Flag(help: "Also check on the broker that each exchange exists (passive declare)")
    var check = false

    func run() async throws {
        bus.bootstrapLogging()
        let configuration = try bus.busConfiguration(connectionName: "rackbus-cli")
        var present: [String: Bool] = [:]
        if check {
            present = try await MessageBus.withBus(configuration: configuration) { messageBus in
                var found: [String: Bool] = [:]
                for exchange in Exchange.conventions {
                    let name = configuration.name(of: exchange)
                    found[name] = try await messageBus.exchangeExists(named: name)
                }
                return found
            }
        }
        for exchange in Exchange.conventions {
            let name = configuration.name(of: exchange)
            let status = check ? (present[name] == true ? "  [present]" : "  [MISSING]") : ""
            print("\(name)  (\(Exchange.kind), durable, not auto-delete)\(status)")
            for key in RoutingKeyCatalogue.keys[exchange] ?? [] {
                print("    \(key)")
            }
        }
        if check, present.values.contains(false) {
            throw ExitCode(1)
        }
    }
}
