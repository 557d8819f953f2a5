/// What the broker sent, as Swift values.
enum InboundEvent {
    case delivery(InboundDelivery)
    case publishAck(channel: UInt16, deliveryTag: UInt64, multiple: Bool)
    case publishNack(channel: UInt16, deliveryTag: UInt64, multiple: Bool)
    case returned(channel: UInt16, replyCode: Int, replyText: String, exchange: String, routingKey: String, properties: MessageProperties)
    case consumerCancelled(channel: UInt16, consumerTag: String)
    case channelClosed(channel: UInt16, replyCode: Int, replyText: String)
    case connectionClosed(replyCode: Int, replyText: String)
    case blocked(reason: String)
    case unblocked
    case ignored
}

/// A delivery copied out of rabbitmq-c's memory.
struct InboundDelivery: Sendable {
    var channel: UInt16
    var consumerTag: String
    var deliveryTag: UInt64
    var redelivered: Bool
    var exchange: String
    var routingKey: String
    var properties: MessageProperties
    var body: [UInt8]
}
