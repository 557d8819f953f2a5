import NIOCore

/// A read request that passed every check that needs no file system.
struct ReadRequest: Sendable, Equatable {
    var components: [String]
    var mode: TransferMode
    var options: [TFTPOption]
    var displayName: String
}

/// What the listening socket does with one datagram, as a pure function. RFC 1350 answers a
/// packet it cannot take with an error packet; only packets too short to name an opcode, and
/// error packets (which are never answered), are dropped. Every case but a read request is counted
/// under `metricLabel`.
enum RequestDecision: Sendable, Equatable {
    case drop(metricLabel: String)
    /// Answer with an error packet. `file` is set for refusals of a named file, which also get a
    /// `tftp.failure` event.
    case refuse(TFTPErrorCode, message: String, metricLabel: String, file: String?)
    case read(ReadRequest)

    static func decide(_ datagram: ByteBuffer) -> RequestDecision {
        let packet: TFTPPacket
        do {
            packet = try TFTPPacket.parse(datagram)
        } catch {
            switch error {
            case .truncated: return .drop(metricLabel: error.reason)
            case .unknownOpcode: return .refuse(.illegalOperation, message: "unknown opcode", metricLabel: error.reason, file: nil)
            case .malformedRequest: return .refuse(.illegalOperation, message: "malformed request", metricLabel: error.reason, file: nil)
            }
        }
        switch packet {
        case .readRequest(let request):
            guard let mode = TransferMode(requestMode: request.mode) else {
                return .refuse(.illegalOperation, message: "unknown mode", metricLabel: "unknown_mode", file: request.displayName)
            }
            do {
                let components = try FileNamePolicy.components(of: request.fileName)
                return .read(ReadRequest(components: components, mode: mode, options: request.options, displayName: request.displayName))
            } catch {
                return .refuse(.accessViolation, message: error.message, metricLabel: "access_violation", file: request.displayName)
            }
        case .writeRequest(let request):
            return .refuse(.accessViolation, message: "write requests are not accepted", metricLabel: "write_request", file: request.displayName)
        case .error:
            return .drop(metricLabel: "unexpected_error")
        case .data, .acknowledgement, .optionAcknowledgement:
            return .refuse(.illegalOperation, message: "no transfer on this port", metricLabel: "unexpected_packet", file: nil)
        }
    }
}
