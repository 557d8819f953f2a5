extension Duration {
    /// Whole milliseconds, rounded down: what AMQP's `expiration`, `poll()` and error messages take.
    var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }

    /// Seconds as a fraction (a database interval, a backoff computation).
    public var secondsValue: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
