import ArgumentParser
import BusCore
import ConfigurationService
import Foundation

/// `rackbus config get|set`: the configuration exchange.
struct Config: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read and change live settings (logging.level, scheduler.concurrency, dhcp.pool, …).",
        subcommands: [Get.self, Set.self])

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one setting, or all of them.")
        @OptionGroup var common: Graph.Common
        @Argument(help: "Setting key; all settings when omitted") var key: String?

        func run() async throws {
            let key = self.key
            let entries = try await common.withBus { try await $0.call(GetConfiguration(key: key)) }
            if let key, entries[key] == nil {
                FileHandle.standardError.write(Data("\(key) is not set\n".utf8))
                throw ExitCode(1)
            }
            common.print(entries) {
                entries.values.sorted { $0.key < $1.key }.map {
                    "\($0.key) = \(render(Array((try? JSONEncoder().encode($0.value)) ?? Data())))  (v\($0.version))"
                }
                .joined(separator: "\n")
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a setting; every service applies it live.",
            discussion:
                "The value is JSON when it parses as JSON (16, true, \"text\"), else taken as a string: rackbus config set logging.level debug"
        )
        @OptionGroup var common: Graph.Common
        @Argument(help: "Setting key") var key: String
        @Argument(help: "New value") var value: String

        func run() async throws {
            let parsed = (try? JSONDecoder().decode(JSONValue.self, from: Data(value.utf8))) ?? .string(value)
            let key = self.key
            let entry = try await common.withBus { try await $0.call(SetConfiguration(key: key, value: parsed)) }
            common.print(entry) {
                "\(entry.key) = \(render(Array((try? JSONEncoder().encode(entry.value)) ?? Data())))  (v\(entry.version))"
            }
        }
    }
}
