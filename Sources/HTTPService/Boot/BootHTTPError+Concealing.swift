import BusCore
import Hummingbird

extension BootHTTPError {
    /// A failed registry or task-graph call, as the boot routes answer it: the node retries on
    /// a 503, so anything that is not the request's fault is one. What the machine's console
    /// shows names no address, path or internal error: an unexpected failure gets an error id
    /// (returned, for the log) instead. Pure.
    public static func concealing(
        _ failure: ServiceCallFailure, errorID: () -> String = ErrorEvent.makeErrorID
    ) -> (error: BootHTTPError, concealedID: String?) {
        switch failure {
        case .remote(let event):
            if let status = event.status, (400..<500).contains(status) {
                return (BootHTTPError(HTTPResponse.Status(code: status), event.message), nil)
            }
            // A service's 5xx message is its own generic one, with its error id.
            return (BootHTTPError(.serviceUnavailable, "\(event.name): \(event.message)"), nil)
        case .timeout(let service):
            return (BootHTTPError(.serviceUnavailable, "\(service) did not answer; try again"), nil)
        case .brokerUnavailable:
            return (BootHTTPError(.serviceUnavailable, "the message broker is unreachable; try again"), nil)
        case .failed:
            let id = errorID()
            return (BootHTTPError(.serviceUnavailable, "the provisioning server failed (error id \(id)); try again"), id)
        }
    }
}
