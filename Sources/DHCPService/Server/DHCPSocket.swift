import Foundation
import Glibc
import Synchronization

extension IPv4Address {
    /// Calls `body` with this address and `port` as a C socket address (for bind, sendto).
    public func withSocketAddress<Result>(port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr = in_addr(s_addr: rawValue.bigEndian)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}

/// The UDP socket the DHCP server listens on: bound to port 67, to one interface, allowed to
/// broadcast. Non-blocking, so a send never holds a task; receiving happens on a thread of its
/// own (``DHCPReceiver``), never on the cooperative pool.
final class DHCPSocket: Sendable {
    let descriptor: Int32

    init(interface: String?, address: IPv4Address, port: UInt16) throws(DHCPConfigurationError) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw DHCPConfigurationError("socket() failed: \(Self.errorText())") }
        var on: Int32 = 1
        let size = socklen_t(MemoryLayout<Int32>.size)
        // Several replicas or a restart may bind the same port on the same device.
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, size)
        _ = setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &on, size)
        if let interface {
            let status = interface.withCString { name in
                setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, socklen_t(strlen(name) + 1))
            }
            guard status == 0 else {
                let text = Self.errorText()
                close(fd)
                throw DHCPConfigurationError("cannot bind to interface \(interface): \(text)")
            }
        }
        let bound = address.withSocketAddress(port: port) { bind(fd, $0, $1) }
        guard bound == 0 else {
            let text = Self.errorText()
            close(fd)
            throw DHCPConfigurationError("cannot bind \(address):\(port): \(text)")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        descriptor = fd
    }

    deinit {
        close(descriptor)
    }

    /// Sends without blocking; a full socket buffer drops the datagram (the client retries).
    @discardableResult
    func send(_ bytes: [UInt8], to address: IPv4Address, port: UInt16) -> Bool {
        let sent = bytes.withUnsafeBytes { buffer in
            address.withSocketAddress(port: port) { sendto(descriptor, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL), $0, $1) }
        }
        return sent == bytes.count
    }

    /// One datagram if one is waiting (non-blocking).
    func receive() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        return Array(buffer[0..<count])
    }

    static func errorText() -> String {
        String(cString: strerror(errno))
    }
}

/// Reads datagrams on a dedicated thread and hands them to a task through a stream.
final class DHCPReceiver: Sendable {
    private let socket: DHCPSocket
    private let stopped = Atomic<Bool>(false)
    let datagrams: AsyncStream<[UInt8]>
    private let continuation: AsyncStream<[UInt8]>.Continuation

    init(socket: DHCPSocket) {
        self.socket = socket
        // A burst beyond this is dropped rather than buffered without bound; clients retry.
        (datagrams, continuation) = AsyncStream.makeStream(of: [UInt8].self, bufferingPolicy: .bufferingNewest(4096))
    }

    func start() {
        let thread = Thread { [self] in
            var poller = pollfd(fd: socket.descriptor, events: Int16(POLLIN), revents: 0)
            while !stopped.load(ordering: .relaxed) {
                // A bounded wait, so that `stop()` is noticed promptly.
                guard poll(&poller, 1, 200) > 0 else { continue }
                while let datagram = socket.receive() {
                    continuation.yield(datagram)
                }
            }
            continuation.finish()
        }
        thread.name = "rackbus-dhcp"
        thread.start()
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
    }
}
