import BusCore
import Foundation
import Testing

/// A typed RPC that is never answered here: the bus it goes to is shut down.
private struct Lookup: BusRequest {
    typealias Reply = Int
    static let exchange = Exchange.dhcp
    static let method = "methods.typedErrorLookup"
    var key: String
}

/// A bus that is shut down before it ever ran: every operation fails at once, without a broker.
private func shutDownBus() throws -> MessageBus {
    let bus = MessageBus(configuration: try BusConfiguration(url: "amqp://guest:guest@127.0.0.1:1/"))
    bus.shutdown()
    return bus
}

@Suite("Typed errors: throws(BusError), underlying errors and locations")
struct TypedErrorTests {
    @Test("a reply that does not decode is a .decoding BusError whose underlying error is the DecodingError")
    func undecodableReply() {
        do {
            _ = try WireFormat.decodeReply(Int.self, messageType: WireFormat.resultType, body: Array(#"{"value":"seven"}"#.utf8))
            Issue.record("a string decoded as an Int")
        } catch {
            // `error` is a BusError here: reading `code` needs no cast.
            #expect(error.code == .decoding)
            #expect(error.message == "cannot decode ResultValue<Int>: value: expected Int")
            guard let underlying = error.underlying as? DecodingError, case .typeMismatch = underlying else {
                Issue.record("underlying is \(String(describing: error.underlying)), not a type mismatch")
                return
            }
            #expect("\(error)".contains(" (underlying: \(underlying)) at BusCore/WireFormat.swift:"))
        }
    }

    @Test("a value that does not encode is an .encoding BusError whose underlying error is the EncodingError")
    func unencodableValue() {
        do {
            _ = try WireFormat.encode(Double.nan)
            Issue.record("NaN encoded as JSON")
        } catch {
            #expect(error.code == .encoding)
            #expect(error.underlying is EncodingError)
        }
    }

    @Test("a BusError made outside the bus names where it was made, and the description says so")
    func creationSite() {
        let line = #line + 1
        let error = BusError(code: .timeout, message: "slow")
        #expect(error.file == #fileID)
        #expect(error.line == line)
        #expect(error.underlying == nil)
        #expect(error.description == "BusError.timeout: slow at \(#fileID):\(line)")
    }

    @Test("a remote error still reads as its ErrorEvent")
    func remoteDescription() {
        let error = BusError(code: .remote, message: "gone", remote: .notFound("gone"))
        #expect(error.description == "NotFoundError: gone (status 404)")
    }

    @Test("a failed call reports the caller's file and line, and the catch reads `code` without a cast")
    func callSite() async throws {
        let bus = try shutDownBus()
        let line = #line + 2
        do {
            let reply = try await bus.call(Lookup(key: "a"), timeout: .seconds(5))
            Issue.record("a shut-down bus answered \(reply)")
        } catch {
            // The compile-time proof: `error` is a BusError, not `any Error`.
            #expect(error.code == .shutdown)
            #expect(error.file == #fileID)
            #expect(error.line == line)
            #expect("\(error)".hasSuffix(" at \(#fileID):\(line)"))
        }
    }

    @Test("publishing, subscribing and waiting report their call sites too")
    func otherOperations() async throws {
        let bus = try shutDownBus()
        // Each operation sits on the line of the `failure` that runs it.
        let published = await failure { () async throws(BusError) in try await bus.publish(1, to: .events, routingKey: "a") }
        #expect(published.error?.code == .shutdown)
        #expect(published.error?.file == #fileID)
        #expect(published.error?.line == published.line)

        let unencodable = await failure { () async throws(BusError) in try await bus.publish(Double.nan, to: .events, routingKey: "a") }
        #expect(unencodable.error?.code == .encoding)
        #expect(unencodable.error?.underlying is EncodingError)
        #expect(unencodable.error?.line == unencodable.line)

        let subscribed = await failure { () async throws(BusError) in _ = try await bus.subscribeRaw(toExchangeNamed: "x", patterns: []) }
        #expect(subscribed.error?.code == .shutdown)
        #expect(subscribed.error?.line == subscribed.line)

        let declared = await failure { () async throws(BusError) in try await bus.declareWorkQueue(named: "typed.work", bindings: []) }
        #expect(declared.error?.code == .shutdown)
        #expect(declared.error?.line == declared.line)

        let neverRun = MessageBus(configuration: try BusConfiguration(url: "amqp://guest:guest@127.0.0.1:1/"))
        defer { neverRun.shutdown() }
        let waited = await failure { () async throws(BusError) in try await neverRun.waitUntilConnected(timeout: .milliseconds(10)) }
        #expect(waited.error?.code == .timeout)
        #expect(waited.error?.file == #fileID)
        #expect(waited.error?.line == waited.line)
    }

    @Test("a configuration error is a BusError that names the configuration code that refused it")
    func configurationError() {
        do {
            _ = try BusConfiguration(url: "http://broker")
            Issue.record("an http URL was accepted")
        } catch {
            #expect(error.code == .invalidConfiguration)
            #expect(error.file == "BusCore/BusConfiguration.swift")
        }
    }

    /// What `body` throws (nil, recorded as an issue, when it succeeds) and the line it runs on.
    private func failure(line: Int = #line, _ body: () async throws(BusError) -> Void) async -> (error: BusError?, line: Int) {
        do {
            try await body()
            Issue.record("the operation succeeded")
            return (nil, line)
        } catch {
            return (error, line)
        }
    }
}
