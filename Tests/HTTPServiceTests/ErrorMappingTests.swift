import BusCore
import Hummingbird
import Testing

@testable import HTTPService

@Suite("Errors, tokens and catalogs (pure)")
struct ErrorMappingTests {
    @Test("Bus failures are sorted: the remote ErrorEvent, a timeout, an unreachable broker")
    func sorting() {
        let remote = ErrorEvent.notFound("no node x")
        #expect(ServiceCallFailure.from(BusError(code: .remote, message: "", remote: remote), service: "s") == .remote(remote))
        #expect(ServiceCallFailure.from(BusError(code: .timeout, message: ""), service: "s") == .timeout(service: "s"))
        #expect(ServiceCallFailure.from(BusError(code: .notConnected, message: "down"), service: "s") == .brokerUnavailable("down"))
        #expect(ServiceCallFailure.from(BusError(code: .connectionLost, message: "lost"), service: "s") == .brokerUnavailable("lost"))
    }

    @Test("The API answers an ErrorEvent's own status, 504 for a timeout, 503 without a broker")
    func apiMapping() {
        let badRequest = APIError.from(
            ServiceCallFailure.remote(.badRequest("Unable to run multiple task graphs against a single target.")))
        #expect(
            badRequest
                == APIError(.badRequest, name: "BadRequestError", message: "Unable to run multiple task graphs against a single target."))
        #expect(APIError.from(ServiceCallFailure.remote(ErrorEvent(name: "X", message: "m"))).status == .internalServerError)
        #expect(APIError.from(ServiceCallFailure.timeout(service: "the node registry")).status == .gatewayTimeout)
        #expect(APIError.from(ServiceCallFailure.brokerUnavailable("down")).status == .serviceUnavailable)
        #expect(APIError.from(HTTPError(.contentTooLarge)).status == .contentTooLarge)
    }

    @Test("An unexpected failure is a generic 500 with an error id; its description stays in the log")
    func concealsInternals() {
        struct StoreFailure: Error, CustomStringConvertible {
            var description: String { "SQLite error 11 at /var/lib/rackbus/nodes.sqlite: SELECT * FROM node" }
        }
        for failure in [StoreFailure() as any Error, ServiceCallFailure.failed("cannot decode Node: /var/lib/rackbus")] {
            let (answer, id) = APIError.concealing(failure, errorID: { "5eed" })
            #expect(answer.status == .internalServerError)
            #expect(answer.name == "InternalServerError")
            #expect(id == "5eed")
            #expect(answer.message.contains("5eed"))
            #expect(!answer.message.contains("/var/lib/rackbus"))
            #expect(APIError.from(failure, errorID: "5eed") == answer)
        }
        // Answers chosen on purpose are not concealed.
        #expect(APIError.concealing(APIError.notFound("no node x"), errorID: { "unused" }).concealedID == nil)
        #expect(APIError.concealing(ServiceCallFailure.remote(.notFound("no node x")), errorID: { "unused" }).error.message == "no node x")
    }

    @Test("Boot routes answer 503 for anything the node should retry, pass 4xx through, and show the machine no internals")
    func bootMapping() {
        func answer(_ failure: ServiceCallFailure) -> BootHTTPError { BootHTTPError.concealing(failure, errorID: { "5eed" }).error }
        #expect(answer(.timeout(service: "the node registry")).status == .serviceUnavailable)
        #expect(answer(.remote(.internalError("db"))).status == .serviceUnavailable)
        #expect(answer(.remote(.notFound("no node"))) == BootHTTPError(.notFound, "no node"))
        let unreachable = answer(.brokerUnavailable("cannot connect to 10.1.2.3:5672: a socket error occurred"))
        #expect(unreachable == BootHTTPError(.serviceUnavailable, "the message broker is unreachable; try again"))
        let (failed, id) = BootHTTPError.concealing(.failed("cannot decode Node: /var/lib/rackbus/nodes.sqlite"), errorID: { "5eed" })
        #expect(id == "5eed")
        #expect(failed == BootHTTPError(.serviceUnavailable, "the provisioning server failed (error id 5eed); try again"))
    }

    @Test("Bearer tokens: the scheme is case-insensitive and the comparison exact")
    func tokens() {
        #expect(BearerTokenMiddleware<BasicRequestContext>.presentedToken("Bearer abc") == "abc")
        #expect(BearerTokenMiddleware<BasicRequestContext>.presentedToken("bearer  abc ") == "abc")
        #expect(BearerTokenMiddleware<BasicRequestContext>.presentedToken("Basic abc") == nil)
        #expect(BearerTokenMiddleware<BasicRequestContext>.presentedToken("Bearer") == nil)
        #expect(BearerTokenMiddleware<BasicRequestContext>.constantTimeEquals("s3cret", "s3cret"))
        #expect(!BearerTokenMiddleware<BasicRequestContext>.constantTimeEquals("s3cres", "s3cret"))
        #expect(!BearerTokenMiddleware<BasicRequestContext>.constantTimeEquals("s3cret!", "s3cret"))
        #expect(!BearerTokenMiddleware<BasicRequestContext>.constantTimeEquals("", "s3cret"))
        #expect(!BearerTokenMiddleware<BasicRequestContext>.constantTimeEquals("s3c", "s3cret"))
    }

    @Test("The smbios catalog keeps the reported fields that have a value, and the MACs")
    func smbiosCatalog() throws {
        let query = try QueryParameters(
            "macs=52:54:00:00:00:01&manufacturer=QEMU&product=Standard+PC&serial=&uuid=u-1&asset=&platform=x86_64")
        #expect(
            BootRoutes.smbiosCatalog(query, macs: ["52:54:00:00:00:01"])
                == ["macs": ["52:54:00:00:00:01"], "manufacturer": "QEMU", "product": "Standard PC", "uuid": "u-1", "platform": "x86_64"])
    }
}
