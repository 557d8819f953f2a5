/// Who hears how a confirmed publish ended: a task that waits for it, or, for a consumer that
/// forwards work, a callback on the I/O thread together with the delivery to settle, so that
/// neither a task nor a wake-up of the cooperative pool is spent per message.
enum ConfirmWaiter: Sendable {
    case caller(CheckedContinuation<Void, any Error>)
    /// `settling` is acknowledged once the broker has the message, and handed back to its
    /// queue when it refuses it.
    case callback(@Sendable (Result<Void, BusError>) -> Void, settling: AckToken?)
}

extension EngineLoop {
    /// Tells the waiter, and settles the delivery a forward carries. A delivery of an earlier
    /// connection is left alone: the broker redelivers it anyway.
    func settle(_ waiter: ConfirmWaiter, _ result: Result<Void, BusError>) {
        switch waiter {
        case .caller(let continuation):
            continuation.resume(with: result.mapError { $0 as any Error })
        case .callback(let notify, let token):
            if let token {
                switch result {
                case .success: execute(.ack(token))
                case .failure: execute(.reject(token, requeue: true))
                }
            }
            notify(result)
        }
    }
}
