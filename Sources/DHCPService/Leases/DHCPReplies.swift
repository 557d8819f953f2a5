/// Builds the server's replies and picks where they go (RFC 2131 section 4.1), as pure functions.
enum DHCPReplies {
    static func offer(to request: DHCPPacket, lease: Lease, configuration: DHCPConfiguration) -> DHCPPacket {
        var reply = DHCPPacket.reply(to: request, type: .offer, yiaddr: lease.ip, serverIdentifier: configuration.pool.serverAddress)
        addLeaseOptions(to: &reply, configuration: configuration)
        addNetworkOptions(to: &reply, configuration: configuration)
        return reply
    }

    static func ack(to request: DHCPPacket, lease: Lease, configuration: DHCPConfiguration) -> DHCPPacket {
        var reply = DHCPPacket.reply(to: request, type: .ack, yiaddr: lease.ip, serverIdentifier: configuration.pool.serverAddress)
        addLeaseOptions(to: &reply, configuration: configuration)
        addNetworkOptions(to: &reply, configuration: configuration)
        return reply
    }

    /// INFORM: configuration only, no address and no lease time (RFC 2131 section 3.4).
    static func informAck(to request: DHCPPacket, configuration: DHCPConfiguration) -> DHCPPacket {
        var reply = DHCPPacket.reply(to: request, type: .ack, yiaddr: .zero, serverIdentifier: configuration.pool.serverAddress)
        reply.ciaddr = request.ciaddr
        addNetworkOptions(to: &reply, configuration: configuration)
        return reply
    }

    static func nak(to request: DHCPPacket, configuration: DHCPConfiguration, reason: String) -> DHCPPacket {
        var reply = DHCPPacket.reply(to: request, type: .nak, yiaddr: .zero, serverIdentifier: configuration.pool.serverAddress)
        reply.setString(.message, to: String(reason.prefix(200)))
        return reply
    }

    private static func addLeaseOptions(to reply: inout DHCPPacket, configuration: DHCPConfiguration) {
        let seconds = configuration.leaseSeconds
        reply.setUInt32(.leaseTime, to: seconds)
        reply.setUInt32(.renewalTime, to: seconds / 2)
        reply.setUInt32(.rebindingTime, to: UInt32((UInt64(seconds) * 7) / 8))
    }

    private static func addNetworkOptions(to reply: inout DHCPPacket, configuration: DHCPConfiguration) {
        reply.setAddress(.subnetMask, to: configuration.pool.subnetMask)
        if !configuration.routers.isEmpty { reply.setAddresses(.router, to: configuration.routers) }
        if !configuration.dnsServers.isEmpty { reply.setAddresses(.domainNameServer, to: configuration.dnsServers) }
        if let domain = configuration.domainName { reply.setString(.domainName, to: domain) }
        // PXE: both the BOOTP fields and the options, since firmware reads one or the other.
        if let next = configuration.nextServer {
            reply.siaddr = next
            reply.setString(.tftpServerName, to: next.description)
        }
        if let file = configuration.bootFileName {
            reply.file = file
            reply.setString(.bootfileName, to: file)
        }
    }

    /// Where a reply goes: through the relay if there is one, to the client's address when it
    /// has one (renewing, informing), otherwise broadcast on the segment.
    static func destination(of reply: DHCPPacket, for request: DHCPPacket, configuration: DHCPConfiguration) -> (
        address: IPv4Address, port: UInt16
    ) {
        if request.giaddr != .zero {
            return (request.giaddr, configuration.serverPort)
        }
        if reply.messageType != .nak, request.ciaddr != .zero {
            return (request.ciaddr, configuration.clientPort)
        }
        // Without a raw socket the client's hardware address cannot be targeted before it has
        // an address, so offers and acks are broadcast (clients accept both).
        return (.broadcast, configuration.clientPort)
    }
}
