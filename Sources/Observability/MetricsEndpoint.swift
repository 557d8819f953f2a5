import BusCore
import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Serves the process's metrics to Prometheus: `GET /metrics` on a TCP address, in the text
/// exposition format, from a ``PrometheusCollectorRegistry`` that swift-metrics feeds.
///
/// Scrapes are rare and small, so one thread of its own accepts and answers them one at a time
/// with blocking socket calls, never on the cooperative pool. A client gets two seconds to send
/// its request line.
public final class MetricsEndpoint: Service, Sendable {
    public let host: String
    public let requestedPort: Int
    private let registry: PrometheusCollectorRegistry
    private let logger: Logger
    private let boundPort = Mutex<Int?>(nil)
    private let readiness = OneShotSignal()
    private let stopping = Atomic<Bool>(false)

    public init(host: String, port: Int, registry: PrometheusCollectorRegistry, logger: Logger = Logger(label: "rackbus.metrics")) {
        self.host = host
        self.requestedPort = port
        self.registry = registry
        self.logger = logger
    }

    /// Parses `HOST:PORT` (an IPv4 address or `localhost`, and a port).
    public convenience init(listen: String, registry: PrometheusCollectorRegistry, logger: Logger = Logger(label: "rackbus.metrics")) throws
    {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65_535).contains(port)
        else { throw MetricsEndpointError("expected HOST:PORT, got \"\(listen)\"") }
        let host = String(listen[..<colon])
        self.init(host: host.isEmpty ? "0.0.0.0" : host, port: port, registry: registry, logger: logger)
    }

    /// The port it listens on once ready (useful when it was asked for port 0).
    public func waitUntilListening() async -> Int? {
        await readiness.wait()
        return boundPort.withLock { $0 }
    }

    public func run() async throws {
        let listener: Int32
        do {
            listener = try Self.listen(host: host == "localhost" ? "127.0.0.1" : host, port: requestedPort)
        } catch {
            readiness.releaseWaiters()
            throw error
        }
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        let port = Int(UInt16(bigEndian: address.sin_port))
        boundPort.withLock { $0 = port }
        logger.info("serving metrics", metadata: ["metrics.address": "\(host):\(port)"])
        readiness.signal()

        await withDiscardingTaskGroup { group in
            group.addTask {
                await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
                    let thread = Thread {
                        self.serve(listener: listener)
                        close(listener)
                        finished.resume()
                    }
                    thread.name = "rackbus-metrics"
                    thread.start()
                }
            }
            group.addTask {
                try? await gracefulShutdown()
                self.stopping.store(true, ordering: .relaxed)
            }
        }
    }

    // MARK: The serving thread

    private func serve(listener: Int32) {
        while !stopping.load(ordering: .relaxed) {
            // Wakes every 200 ms to notice a shutdown.
            var descriptor = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 200) > 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            Self.answer(client: client, registry: registry, logger: logger)
            close(client)
        }
    }

    private static func answer(client: Int32, registry: PrometheusCollectorRegistry, logger: Logger) {
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1024)
        // Only the request line matters; stop at the end of the headers or at 8 KiB.
        while request.count < 8192 {
            let count = recv(client, &chunk, chunk.count, 0)
            guard count > 0 else { break }
            request.append(contentsOf: chunk[..<count])
            if request.count >= 4, request.suffix(4).elementsEqual([13, 10, 13, 10]) { break }
        }
        let response = MetricsHTTP.response(toRequest: request) { registry.emitToBuffer() }
        var sent = 0
        while sent < response.count {
            let count = response[sent...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else {
                logger.debug("a metrics client went away mid-answer")
                return
            }
            sent += count
        }
    }

    private static func listen(host: String, port: Int) throws -> Int32 {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw MetricsEndpointError("\"\(host)\" is not an IPv4 address")
        }
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { throw MetricsEndpointError("socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(socket, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            close(socket)
            throw MetricsEndpointError("cannot listen on \(host):\(port): \(reason)")
        }
        return socket
    }
}

public struct MetricsEndpointError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The HTTP side, pure: which answer a request gets.
public enum MetricsHTTP {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// `GET /metrics` (or `HEAD`) gets the exposition; other paths 404, other methods 405,
    /// anything that is not an HTTP request line 400.
    public static func response(toRequest request: [UInt8], metrics: () -> [UInt8]) -> [UInt8] {
        let line = request.prefix { $0 != 13 && $0 != 10 }
        let parts = String(decoding: line, as: UTF8.self).split(separator: " ")
        guard parts.count == 3, parts[2].hasPrefix("HTTP/") else {
            return answer(status: "400 Bad Request", body: Array("bad request\n".utf8))
        }
        guard parts[0] == "GET" || parts[0] == "HEAD" else {
            return answer(status: "405 Method Not Allowed", body: Array("only GET\n".utf8), extra: "Allow: GET, HEAD\r\n")
        }
        let path = parts[1].split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard path == "/metrics" else { return answer(status: "404 Not Found", body: Array("metrics are at /metrics\n".utf8)) }
        let body = metrics()
        return answer(status: "200 OK", body: parts[0] == "HEAD" ? [] : body, contentType: contentType, length: body.count)
    }

    private static func answer(
        status: String, body: [UInt8], contentType: String = "text/plain; charset=utf-8", length: Int? = nil, extra: String = ""
    ) -> [UInt8] {
        let head =
            "HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(length ?? body.count)\r\n\(extra)Connection: close\r\n\r\n"
        return Array(head.utf8) + body
    }
}
