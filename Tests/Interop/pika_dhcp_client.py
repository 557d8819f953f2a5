#!/usr/bin/env python3
"""Calls the nine on.dhcp lease RPCs the way a RackHD service would, with pika.

Usage: pika_dhcp_client.py AMQP_URL EXCHANGE_PREFIX

Each request is `{"value": ...}` with the AMQP type RackHD's protocol module sets (IpAddress,
MacAddress or Object) and a fresh reply queue per call. Expects leases 02:00:00:00:04:01 ->
10.44.0.11 and 02:00:00:00:04:02 -> 10.44.0.12 in a pool 10.44.0.10-20. Prints one JSON object:
{method: {type, content_type, body}}.
"""
import json
import sys

import pika

from rackhd_rpc import call as rackhd_call, run_and_print


def call(channel, exchange, method, value, payload_type):
    body = json.dumps({"value": value} if value is not None else {})
    reply = rackhd_call(channel, exchange, f"methods.{method}", body, payload_type)
    del reply["correlation_id"]
    return reply


def main():
    url, prefix = sys.argv[1], sys.argv[2]
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    dhcp = f"{prefix}.dhcp"
    replies = {
        "lookupIpLease": call(channel, dhcp, "lookupIpLease", "10.44.0.11", "IpAddress"),
        "ipInRange": call(channel, dhcp, "ipInRange", "10.44.0.15", "IpAddress"),
        "peekLeaseTable": call(channel, dhcp, "peekLeaseTable", None, "Object"),
        "pinMac": call(channel, dhcp, "pinMac", "02:00:00:00:04:01", "MacAddress"),
        "unpinMac": call(channel, dhcp, "unpinMac", "02:00:00:00:04:01", "MacAddress"),
        "pinIp": call(channel, dhcp, "pinIp", {"mac": "02:00:00:00:04:09", "ip": "10.44.0.19"}, "Object"),
        "unpinIp": call(channel, dhcp, "unpinIp", "10.44.0.19", "IpAddress"),
        "removeLease": call(channel, dhcp, "removeLease", "02:00:00:00:04:01", "MacAddress"),
        "removeLeaseByIp": call(channel, dhcp, "removeLeaseByIp", "10.44.0.12", "IpAddress"),
        "badMac": call(channel, dhcp, "removeLease", "not-a-mac", "MacAddress"),
    }
    connection.close()
    return replies


if __name__ == "__main__":
    run_and_print(main)
