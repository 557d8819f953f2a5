"""RackHD's requester algorithm with pika: a fresh exclusive reply queue per call, named
`<exchange>:<routingKey>.request:<id>`, no correlation id unless one is given."""
import json
import uuid

import pika


def call(channel, exchange, routing_key, body, payload_type, correlation_id=None, timeout=15):
    """Publishes `body` (a string) and returns the first reply as {type, correlation_id, content_type, body}."""
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
    for method, properties, reply in channel.consume(reply_queue, auto_ack=True, inactivity_timeout=timeout):
        channel.cancel()
        if method is None:
            raise RuntimeError(f"no reply to {routing_key} within {timeout} s")
        return {
            "type": properties.type,
            "correlation_id": properties.correlation_id,
            "content_type": properties.content_type,
            "body": json.loads(reply),
        }


def run_and_print(main):
    """Prints main()'s result as JSON, or the failure, and exits accordingly: never hangs a test."""
    import sys

    try:
        print(json.dumps(main()))
    except Exception as error:
        print(json.dumps({"error": repr(error)}))
        sys.exit(1)
