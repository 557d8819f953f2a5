#!/usr/bin/env python3
"""An ordinary AMQP client (pika) talking to RackBus the way RackHD's services did.

Usage: pika_client.py AMQP_URL EXCHANGE_PREFIX

It calls the echo RPC served by BusCore RackHD-style (a fresh exclusive reply queue per call,
no correlation id), calls it again the modern way (correlation id), sends a malformed request,
then waits for one `graph.finished.*` event published by BusCore. It prints one JSON object
with what it received and exits 0, or prints the failure and exits 1.
"""
import json
import sys
import uuid

import pika


def call(channel, exchange, routing_key, body, payload_type, correlation_id=None):
    # RackHD names per-call reply queues <exchange>:<routingKey>.request:<id>.
    reply_queue = channel.queue_declare(
        queue=f"{exchange}:{routing_key}.request:{uuid.uuid4().hex[:7]}", exclusive=True, auto_delete=True
    ).method.queue
    channel.basic_publish(
        exchange=exchange,
        routing_key=routing_key,
        properties=pika.BasicProperties(
            content_type="application/json", type=payload_type, reply_to=reply_queue, correlation_id=correlation_id
        ),
        body=body,
    )
    for method, properties, reply in channel.consume(reply_queue, auto_ack=True, inactivity_timeout=15):
        channel.cancel()
        if method is None:
            raise RuntimeError(f"no reply to {routing_key} within 15 s")
        return {
            "type": properties.type,
            "correlation_id": properties.correlation_id,
            "content_type": properties.content_type,
            "body": json.loads(reply),
        }


def main():
    url, prefix = sys.argv[1], sys.argv[2]
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()

    events = channel.queue_declare(queue="", exclusive=True, auto_delete=True).method.queue
    channel.queue_bind(queue=events, exchange=f"{prefix}.events", routing_key="graph.finished.#")

    result = {}
    dhcp = f"{prefix}.dhcp"
    result["rackhd_style"] = call(channel, dhcp, "methods.echo", json.dumps({"text": "from pika", "number": 42}), "EchoRequest")
    result["with_correlation_id"] = call(
        channel, dhcp, "methods.echo", json.dumps({"text": "correlated", "number": 7}), "EchoRequest", "pika-1"
    )
    result["malformed"] = call(channel, dhcp, "methods.echo", "{\"text\": 12}", "EchoRequest")

    for method, properties, body in channel.consume(events, auto_ack=True, inactivity_timeout=30):
        if method is None:
            raise RuntimeError("no graph.finished event within 30 s")
        result["event"] = {
            "routing_key": method.routing_key,
            "type": properties.type,
            "content_type": properties.content_type,
            "body": json.loads(body),
        }
        break
    channel.cancel()
    connection.close()
    print(json.dumps(result))


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # report, never hang the test
        print(json.dumps({"error": repr(error)}))
        sys.exit(1)
