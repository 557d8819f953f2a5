import BusTestSupport
import Foundation
import Logging
import Observability
import Prometheus
import ServiceLifecycle
import Testing

@Suite("Metrics endpoint")
struct MetricsEndpointTests {
    @Test("GET /metrics gets the exposition; other paths, methods and garbage get 404, 405 and 400")
    func answers() {
        let metrics = { Array("rackbus_up 1\n".utf8) }
        func answer(_ request: String) -> String {
            String(decoding: MetricsHTTP.response(toRequest: Array(request.utf8), metrics: metrics), as: UTF8.self)
        }
        let ok = answer("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(ok.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(ok.contains("Content-Type: \(MetricsHTTP.contentType)"))
        #expect(ok.contains("Content-Length: 13\r\n"))
        #expect(ok.hasSuffix("\r\n\r\nrackbus_up 1\n"))
        #expect(answer("GET /metrics?name=x HTTP/1.0\r\n\r\n").hasPrefix("HTTP/1.1 200 OK"))
        let head = answer("HEAD /metrics HTTP/1.1\r\n\r\n")
        #expect(head.hasPrefix("HTTP/1.1 200 OK") && head.hasSuffix("\r\n\r\n") && head.contains("Content-Length: 13"))
        #expect(answer("GET / HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 404"))
        #expect(answer("POST /metrics HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 405"))
        #expect(answer("\u{16}\u{03}\u{01}garbage").hasPrefix("HTTP/1.1 400"))
        #expect(answer("").hasPrefix("HTTP/1.1 400"))
    }

    @Test("HOST:PORT is checked")
    func listenAddress() throws {
        let registry = PrometheusCollectorRegistry()
        let endpoint = try MetricsEndpoint(listen: "127.0.0.1:9180", registry: registry)
        #expect(endpoint.host == "127.0.0.1" && endpoint.requestedPort == 9180)
        #expect(throws: MetricsEndpointError.self) { try MetricsEndpoint(listen: "9180", registry: registry) }
        #expect(throws: MetricsEndpointError.self) { try MetricsEndpoint(listen: "127.0.0.1:99999", registry: registry) }
    }

    @Test("serves the registry over TCP and stops on graceful shutdown")
    func servesOverTCP() async throws {
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(
            descriptor: MetricNameDescriptor(
                namespace: "rackbus", metricName: "test_scrapes", unitName: "total", helpText: "scrapes in the test")
        ).increment(by: Int64(3))
        let endpoint = MetricsEndpoint(host: "127.0.0.1", port: 0, registry: registry)
        let group = ServiceGroup(services: [endpoint], logger: Logger(label: "test"))
        try await withThrowingTaskGroup { tasks in
            tasks.addTask { try await group.run() }
            let port = try #require(await endpoint.waitUntilListening())
            let scrape = try await HTTPProbe.get(port: port, path: "/metrics")
            #expect(scrape.status == 200)
            #expect(scrape.body.contains("rackbus_test_scrapes_total 3"))
            #expect(try await HTTPProbe.get(port: port, path: "/nothing").status == 404)
            #expect(try await HTTPProbe.get(port: port, path: "/metrics", method: "DELETE").status == 405)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            await #expect(throws: (any Error).self) { _ = try await HTTPProbe.get(port: port, path: "/metrics") }
        }
    }
}
