import BusCore
import BusTestSupport
import Foundation
import Testing

/// Certificates made with openssl for one test: a CA, a server certificate for localhost and
/// 127.0.0.1, and a client certificate, all signed by that CA.
struct TestPKI {
    let directory: URL
    var ca: String { directory.appendingPathComponent("ca.pem").path }
    var serverCertificate: String { directory.appendingPathComponent("server.pem").path }
    var serverKey: String { directory.appendingPathComponent("server.key").path }
    var clientCertificate: String { directory.appendingPathComponent("client.pem").path }
    var clientKey: String { directory.appendingPathComponent("client.key").path }

    static func generate() async throws -> TestPKI {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "rackbus-pki-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let pki = TestPKI(directory: directory)
        func openssl(_ arguments: String...) async throws {
            try await TestBroker.run("/usr/bin/openssl", arguments)
        }
        let dir = directory.path
        try await openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=RackBus Test CA",
            "-keyout", "\(dir)/ca.key", "-out", pki.ca)
        try "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n".write(
            toFile: "\(dir)/server.ext", atomically: true, encoding: .utf8)
        try "extendedKeyUsage=clientAuth\n".write(
            toFile: "\(dir)/client.ext", atomically: true, encoding: .utf8)
        for (name, subject) in [("server", "/CN=localhost"), ("client", "/CN=rackbus-test-client")] {
            try await openssl(
                "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", "\(dir)/\(name).key",
                "-out", "\(dir)/\(name).csr")
            try await openssl(
                "x509", "-req", "-in", "\(dir)/\(name).csr", "-CA", pki.ca, "-CAkey", "\(dir)/ca.key",
                "-CAcreateserial",
                "-days", "2", "-extfile", "\(dir)/\(name).ext", "-out", "\(dir)/\(name).pem")
        }
        return pki
    }

    func remove() {
        try? FileManager.default.removeItem(at: directory)
    }
}

@Suite("TLS to the broker", .serialized, .timeLimit(.minutes(2)))
struct TLSTests {
    /// A TLS listener of its own, so the test controls every certificate involved.
    static var listenerPort: Int {
        (Int(TestBroker.environment["RACKBUS_BROKER_TLS_PORT"] ?? "5671") ?? 5671) + 30
    }

    @Test(
        "an amqps:// connection with a CA, client certificate and peer verification works end to end")
    func amqpsRoundTrip() async throws {
        let pki = try await TestPKI.generate()
        defer { pki.remove() }
        // Hold the broker for the whole test: a concurrent restart would drop the runtime listener.
        try await BrokerLock.shared.withShared {
            try await TestBroker.brokerScript(
                "tls-listener", pki.ca, pki.serverCertificate, pki.serverKey, String(Self.listenerPort))

            let url =
                "amqps://guest:guest@localhost:\(Self.listenerPort)/?cacertfile=\(pki.ca)&certfile=\(pki.clientCertificate)&keyfile=\(pki.clientKey)&verify=verify_peer"
            var configuration = try BusConfiguration(url: url)
            #expect(configuration.tls?.verifyPeer == true)
            configuration.exchangePrefix = TestBroker.uniquePrefix()
            try await TestBroker.withBus(configuration) { bus in
                // The broker's own view: a connection on the TLS port, with TLS on.
                let connections = try await TestBroker.brokerScript(
                    "ctl", "-q", "list_connections", "port", "ssl")
                #expect(
                    connections.contains("\(Self.listenerPort)\ttrue"),
                    "the broker sees no TLS connection: \(connections)")
                try await withEchoServer(bus) {
                    let reply = try await bus.call(Echo(text: "over tls", number: 443))
                    #expect(reply.text == "over tls")
                }
                let events = try await bus.subscribe(to: .events, patterns: ["tftp.#"], as: NodeEvent.self)
                try await bus.publish(
                    NodeEvent(nodeId: "n", sequence: 5), to: .events, routingKey: "tftp.success.n")
                #expect(try await collect(events, count: 1)[0].message.sequence == 5)
            }
        }
    }

    @Test("a broker certificate from another CA is refused")
    func untrustedCertificateRefused() async throws {
        let trusted = try await TestPKI.generate()
        let stranger = try await TestPKI.generate()
        defer {
            trusted.remove()
            stranger.remove()
        }
        var configuration = try BusConfiguration(
            url: "amqps://guest:guest@localhost:\(Self.listenerPort)/?cacertfile=\(stranger.ca)")
        configuration.exchangePrefix = TestBroker.uniquePrefix()
        configuration.connectTimeout = .seconds(2)
        try await BrokerLock.shared.withShared {
            try await TestBroker.brokerScript(
                "tls-listener", trusted.ca, trusted.serverCertificate, trusted.serverKey,
                String(Self.listenerPort))
            try await MessageBus.withBus(configuration: configuration, logger: TestBroker.logger) { bus in
                let error = await #expect(throws: BusError.self) {
                    try await bus.waitUntilConnected(timeout: .seconds(2))
                }
                #expect(error?.code == .timeout)
                #expect(!bus.isConnected)
            }
        }
    }
}
