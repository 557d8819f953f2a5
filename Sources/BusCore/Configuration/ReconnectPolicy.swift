/// Exponential backoff with a cap and jitter, as a pure function of the attempt number.
public struct ReconnectPolicy: Sendable, Equatable {
    /// Delay before the second attempt (the first is immediate).
    public var initialDelay: Duration
    /// The delay never grows beyond this.
    public var maximumDelay: Duration
    /// Each delay is the previous one times this.
    public var multiplier: Double
    /// Up to this fraction of the delay is added at random, so replicas do not reconnect in lockstep.
    public var jitter: Double

    public init(
        initialDelay: Duration = .milliseconds(100), maximumDelay: Duration = .seconds(1),
        multiplier: Double = 2, jitter: Double = 0.2
    ) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.multiplier = multiplier
        self.jitter = jitter
    }

    /// The wait before attempt number `attempt` (1-based; attempt 1 waits nothing).
    /// `random` is a number in 0..<1 supplied by the caller, which keeps this function pure.
    public func delay(beforeAttempt attempt: Int, random: Double) -> Duration {
        guard attempt > 1 else { return .zero }
        let initial = initialDelay.secondsValue
        let maximum = maximumDelay.secondsValue
        let exponent = Double(min(attempt - 2, 60))
        let base = min(initial * pow(multiplier, exponent), maximum)
        let withJitter = min(base * (1 + jitter * min(max(random, 0), 1)), maximum)
        return .milliseconds(Int64((withJitter * 1000).rounded()))
    }

    private func pow(_ base: Double, _ exponent: Double) -> Double {
        var result = 1.0
        var remaining = Int(exponent)
        while remaining > 0 {
            result *= base
            remaining -= 1
            if result > 1e12 { break }
        }
        return result
    }
}
