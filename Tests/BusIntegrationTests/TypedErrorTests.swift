import BusCore
import BusTestSupport
import Testing

/// ``Echo`` on the wire, but expecting a number back: the echo server's reply does not decode.
private struct EchoExpectingNumber: BusRequest {
    typealias Reply = Int
    static let exchange = Exchange.dhcp
    static let method = Echo.method
    static let payloadType = Echo.payloadType
    var text: String
    var number: Int
}

@Suite("Typed errors over the real broker", .timeLimit(.minutes(2)))
struct TypedErrorTests {
    @Test("a reply that does not decode is a .decoding BusError with the DecodingError, at the call's own line")
    func undecodableReply() async throws {
        try await TestBroker.withBus { bus in
            try await withEchoServer(bus) {
                // Inside a closure the thrown type of `do` is not inferred; `throws(BusError)` says it.
                let line = #line + 2
                do throws(BusError) {
                    let reply = try await bus.call(EchoExpectingNumber(text: "hello", number: 7))
                    Issue.record("an EchoReply decoded as \(reply)")
                } catch {
                    // No cast: `call` throws only BusError.
                    #expect(error.code == .decoding)
                    #expect(error.file == #fileID)
                    #expect(error.line == line)
                    guard let underlying = error.underlying as? DecodingError, case .typeMismatch = underlying else {
                        Issue.record("underlying is \(String(describing: error.underlying)), not a type mismatch")
                        return
                    }
                }
            }
        }
    }

    @Test("a call nobody answers times out at the call's own line")
    func timeoutLocation() async throws {
        try await TestBroker.withBus { bus in
            let line = #line + 2
            do throws(BusError) {
                let reply = try await bus.call(Echo(text: "nobody listens", number: 1), timeout: .milliseconds(300))
                Issue.record("nobody listens, yet \(reply) came back")
            } catch {
                #expect(error.code == .timeout)
                #expect(error.file == #fileID)
                #expect(error.line == line)
                #expect(error.underlying == nil)
            }
        }
    }
}
