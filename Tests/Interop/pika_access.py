#!/usr/bin/env python3
"""What the broker lets one user do, tried with plain AMQP 0-9-1 (pika), one operation at a time.

Usage: pika_access.py AMQP_URL OPERATIONS_JSON

OPERATIONS_JSON is a list of operations:
  ["publish", EXCHANGE, ROUTING_KEY, BODY, TYPE]  a confirmed, mandatory publish ("" is the default exchange)
  ["consume", QUEUE]                             basic.consume on an existing queue (no declare)
  ["delete_exchange", EXCHANGE]                  exchange.delete
It prints a JSON list with one result per operation: "ok", "unroutable", or the AMQP reply code
with which the broker closed the channel (403 for ACCESS_REFUSED). Each operation gets a fresh
channel, so one refusal does not hide the next.
"""
import json
import sys

import pika
import pika.exceptions


def attempt(connection, operation):
    channel = connection.channel()
    try:
        if operation[0] == "publish":
            _, exchange, key, body, message_type = operation
            channel.confirm_delivery()
            channel.basic_publish(
                exchange, key, body.encode(), pika.BasicProperties(content_type="application/json", type=message_type), mandatory=True)
        elif operation[0] == "consume":
            channel.basic_consume(operation[1], lambda *_: None)
        elif operation[0] == "delete_exchange":
            channel.exchange_delete(operation[1])
        else:
            raise ValueError(f"unknown operation {operation[0]}")
    except pika.exceptions.UnroutableError:
        return "unroutable"
    except pika.exceptions.ChannelClosedByBroker as closed:
        return closed.reply_code
    if channel.is_open:
        channel.close()
    return "ok"


def main():
    url, operations = sys.argv[1], json.loads(sys.argv[2])
    # RackBus's own URL options (exchanges=passive) mean nothing to pika, which refuses them.
    connection = pika.BlockingConnection(pika.URLParameters(url.split("?")[0]))
    results = [attempt(connection, operation) for operation in operations]
    connection.close()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
