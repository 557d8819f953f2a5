import NIOCore

/// RFC 1350 opcodes, with RFC 2347's OACK.
public enum TFTPOpcode: UInt16, Sendable {
    case readRequest = 1
    case writeRequest = 2
    case data = 3
    case acknowledgement = 4
    case error = 5
    case optionAcknowledgement = 6
}

/// RFC 1350 error codes, with RFC 2347's 8.
public enum TFTPErrorCode: UInt16, Sendable, Equatable {
    case notDefined = 0
    case fileNotFound = 1
    case accessViolation = 2
    case diskFull = 3
    case illegalOperation = 4
    case unknownTransferID = 5
    case fileAlreadyExists = 6
    case noSuchUser = 7
    case optionNegotiationFailed = 8
}

/// One `name=value` pair of an RFC 2347 request or OACK, as sent (names compare case-insensitively).
public struct TFTPOption: Sendable, Equatable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// A read or write request. The file name stays bytes: whether it is an acceptable name is
/// ``FileNamePolicy``'s decision, not the parser's.
public struct TFTPRequest: Sendable, Equatable {
    public var fileName: [UInt8]
    public var mode: String
    public var options: [TFTPOption]

    public init(fileName: [UInt8], mode: String, options: [TFTPOption] = []) {
        self.fileName = fileName
        self.mode = mode
        self.options = options
    }

    public init(fileName: String, mode: String, options: [TFTPOption] = []) {
        self.init(fileName: Array(fileName.utf8), mode: mode, options: options)
    }

    /// The name for logs and events: lossy UTF-8, cut to 256 bytes' worth.
    public var displayName: String {
        String(decoding: fileName.prefix(256), as: UTF8.self)
    }
}

public enum TFTPPacket: Sendable, Equatable {
    case readRequest(TFTPRequest)
    case writeRequest(TFTPRequest)
    case data(block: UInt16, payload: ByteBuffer)
    case acknowledgement(block: UInt16)
    case error(code: UInt16, message: String)
    case optionAcknowledgement([TFTPOption])
}

/// Why a datagram is not a TFTP packet. `reason` is the metric label.
public enum TFTPPacketError: Error, Sendable, Equatable {
    /// Fewer than the 2 bytes of an opcode, or a packet cut short (an ACK of 3 bytes).
    case truncated
    case unknownOpcode(UInt16)
    /// A request without its NUL-terminated file name and mode.
    case malformedRequest

    public var reason: String {
        switch self {
        case .truncated: "truncated"
        case .unknownOpcode: "unknown_opcode"
        case .malformedRequest: "malformed_request"
        }
    }
}

extension TFTPPacket {
    /// Parses one datagram. Never traps: every byte sequence is either a packet or an error.
    public static func parse(_ datagram: ByteBuffer) throws(TFTPPacketError) -> TFTPPacket {
        var buffer = datagram
        guard let rawOpcode = buffer.readInteger(as: UInt16.self) else { throw .truncated }
        guard let opcode = TFTPOpcode(rawValue: rawOpcode) else { throw .unknownOpcode(rawOpcode) }
        switch opcode {
        case .readRequest, .writeRequest:
            let request = try parseRequest(&buffer)
            return opcode == .readRequest ? .readRequest(request) : .writeRequest(request)
        case .data:
            guard let block = buffer.readInteger(as: UInt16.self) else { throw .truncated }
            return .data(block: block, payload: buffer)
        case .acknowledgement:
            guard let block = buffer.readInteger(as: UInt16.self) else { throw .truncated }
            return .acknowledgement(block: block)
        case .error:
            guard let code = buffer.readInteger(as: UInt16.self) else { throw .truncated }
            // The message is NUL-terminated; a missing terminator is tolerated (it is only text).
            let strings = nulTerminatedStrings(&buffer, allowUnterminatedTail: true)
            return .error(code: code, message: strings.first.map { String(decoding: $0, as: UTF8.self) } ?? "")
        case .optionAcknowledgement:
            let strings = nulTerminatedStrings(&buffer, allowUnterminatedTail: false)
            return .optionAcknowledgement(optionPairs(strings[...]))
        }
    }

    private static func parseRequest(_ buffer: inout ByteBuffer) throws(TFTPPacketError) -> TFTPRequest {
        let strings = nulTerminatedStrings(&buffer, allowUnterminatedTail: false)
        guard strings.count >= 2 else { throw .malformedRequest }
        let mode = String(decoding: strings[1], as: UTF8.self)
        return TFTPRequest(fileName: strings[0], mode: mode, options: optionPairs(strings[2...]))
    }

    /// Pairs of strings as options. Some clients pad requests with NULs; empty names and an
    /// unpaired last string are ignored rather than refused (tftpd-hpa does the same).
    private static func optionPairs(_ strings: ArraySlice<[UInt8]>) -> [TFTPOption] {
        var options: [TFTPOption] = []
        var index = strings.startIndex
        while index + 1 < strings.endIndex {
            let name = String(decoding: strings[index], as: UTF8.self)
            if !name.isEmpty { options.append(TFTPOption(name, String(decoding: strings[index + 1], as: UTF8.self))) }
            index += 2
        }
        return options
    }

    private static func nulTerminatedStrings(_ buffer: inout ByteBuffer, allowUnterminatedTail: Bool) -> [[UInt8]] {
        var strings: [[UInt8]] = []
        buffer.withUnsafeReadableBytes { bytes in
            var start = 0
            for (index, byte) in bytes.enumerated() where byte == 0 {
                strings.append(Array(bytes[start..<index]))
                start = index + 1
            }
            if allowUnterminatedTail, start < bytes.count { strings.append(Array(bytes[start...])) }
        }
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return strings
    }

    /// Appends the packet's wire form to `buffer`.
    public func write(into buffer: inout ByteBuffer) {
        switch self {
        case .readRequest(let request), .writeRequest(let request):
            buffer.writeInteger(self.opcode.rawValue)
            buffer.writeBytes(request.fileName)
            buffer.writeInteger(UInt8(0))
            buffer.writeString(request.mode)
            buffer.writeInteger(UInt8(0))
            Self.write(request.options, into: &buffer)
        case .data(let block, let payload):
            buffer.writeInteger(TFTPOpcode.data.rawValue)
            buffer.writeInteger(block)
            buffer.writeImmutableBuffer(payload)
        case .acknowledgement(let block):
            buffer.writeInteger(TFTPOpcode.acknowledgement.rawValue)
            buffer.writeInteger(block)
        case .error(let code, let message):
            buffer.writeInteger(TFTPOpcode.error.rawValue)
            buffer.writeInteger(code)
            // A NUL inside the message would end it early on the wire.
            buffer.writeString(String(message.filter { $0 != "\0" }.prefix(200)))
            buffer.writeInteger(UInt8(0))
        case .optionAcknowledgement(let options):
            buffer.writeInteger(TFTPOpcode.optionAcknowledgement.rawValue)
            Self.write(options, into: &buffer)
        }
    }

    public func encoded(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        write(into: &buffer)
        return buffer
    }

    public static func error(_ code: TFTPErrorCode, _ message: String) -> TFTPPacket {
        .error(code: code.rawValue, message: message)
    }

    public var opcode: TFTPOpcode {
        switch self {
        case .readRequest: .readRequest
        case .writeRequest: .writeRequest
        case .data: .data
        case .acknowledgement: .acknowledgement
        case .error: .error
        case .optionAcknowledgement: .optionAcknowledgement
        }
    }

    private static func write(_ options: [TFTPOption], into buffer: inout ByteBuffer) {
        for option in options {
            buffer.writeString(option.name)
            buffer.writeInteger(UInt8(0))
            buffer.writeString(option.value)
            buffer.writeInteger(UInt8(0))
        }
    }
}
