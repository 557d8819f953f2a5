import HTTPService
import NodeProtocol
import Testing

@Suite("HTTPConfiguration (pure)")
struct ConfigurationTests {
    @Test("Defaults: boot on 0.0.0.0:9080, API on 127.0.0.1:8080 without a token, discover unknown nodes")
    func defaults() throws {
        let configuration = try HTTPConfiguration.fromEnvironment([:])
        #expect(configuration.bootListen == ListenAddress(host: "0.0.0.0", port: 9080))
        #expect(configuration.apiListen == ListenAddress(host: "127.0.0.1", port: 8080))
        #expect(configuration.apiToken == nil)
        #expect(configuration.unknownNodes == .discover)
        #expect(configuration.discoveryGraph == "Graph.Discovery")
        #expect(configuration.staticRoot == ".rackbus/static")
        #expect(configuration.templatesDirectory == nil)
        #expect(configuration.bootURL == "http://172.31.128.1:9080")
        #expect(configuration.apiBase == "http://172.31.128.1:9080/api/current")
    }

    @Test("Every variable is read")
    func environment() throws {
        let configuration = try HTTPConfiguration.fromEnvironment([
            "RACKBUS_HTTP_LISTEN": "172.31.128.1:80", "RACKBUS_HTTP_API_LISTEN": "[::]:8443", "RACKBUS_HTTP_API_TOKEN": "s3cret",
            "RACKBUS_UNKNOWN_NODES": "boot-local", "RACKBUS_HTTP_DISCOVERY_GRAPH": "Graph.Mine",
            "RACKBUS_HTTP_STATIC_ROOT": "/srv/static",
            "RACKBUS_HTTP_TEMPLATES": "/srv/templates", "RACKBUS_BOOT_HTTP_URL": "http://10.0.0.1:8000/",
        ])
        #expect(configuration.bootListen == ListenAddress(host: "172.31.128.1", port: 80))
        #expect(configuration.apiListen == ListenAddress(host: "::", port: 8443))
        #expect(configuration.apiToken == "s3cret")
        #expect(configuration.unknownNodes == .bootLocal)
        #expect(configuration.discoveryGraph == "Graph.Mine")
        #expect(configuration.staticRoot == "/srv/static")
        #expect(configuration.templatesDirectory == "/srv/templates")
        #expect(configuration.bootURL == "http://10.0.0.1:8000")
    }

    @Test(
        "Invalid values are refused naming the variable",
        arguments: [
            ("RACKBUS_HTTP_LISTEN", "9080"), ("RACKBUS_HTTP_LISTEN", "0.0.0.0:99999"), ("RACKBUS_HTTP_API_LISTEN", "localhost:x"),
            ("RACKBUS_UNKNOWN_NODES", "reboot"), ("RACKBUS_BOOT_HTTP_URL", "ftp://x"), ("RACKBUS_BOOT_HTTP_URL", "not a url"),
        ])
    func invalid(key: String, value: String) {
        #expect {
            try HTTPConfiguration.fromEnvironment([key: value])
        } throws: { error in
            (error as? HTTPConfigurationError)?.message.contains(key) == true
        }
    }

    @Test("The API on a non-loopback address needs a token")
    func exposedAPI() throws {
        #expect(throws: HTTPConfigurationError.self) { try HTTPConfiguration.fromEnvironment(["RACKBUS_HTTP_API_LISTEN": "0.0.0.0:8080"]) }
        let protected = try HTTPConfiguration.fromEnvironment(["RACKBUS_HTTP_API_LISTEN": "0.0.0.0:8080", "RACKBUS_HTTP_API_TOKEN": "t"])
        #expect(protected.apiToken == "t")
        #expect(ListenAddress("localhost:1")?.isLoopback == true)
        #expect(ListenAddress("[::1]:1")?.isLoopback == true)
        #expect(ListenAddress("127.0.0.2:1")?.isLoopback == true)
        #expect(ListenAddress("10.0.0.1:1")?.isLoopback == false)
    }
}
