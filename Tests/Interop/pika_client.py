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

import pika

from rackhd_rpc import call, run_and_print


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
    return result


if __name__ == "__main__":
    run_and_print(main)
