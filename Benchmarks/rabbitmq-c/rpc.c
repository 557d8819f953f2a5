/* Baseline: RPC over rabbitmq-c alone, client and server in one thread on one connection,
 * with the same AMQP semantics BusCore uses (requests through a topic exchange, the server
 * consuming with manual acks and a prefetch, replies to an exclusive reply queue by correlation
 * id). `--simple` uses the default exchange and auto-ack instead: the cheapest possible round
 * trip. Prints one JSON line like rackbus-bench.  Usage: rpc PORT CALLS IN_FLIGHT [--simple] */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include "clock.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv) {
    if (argc < 4) return 64;
    int port = atoi(argv[1]), total = atoi(argv[2]), inflight = atoi(argv[3]);
    int simple = argc > 4 && strcmp(argv[4], "--simple") == 0;
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    if (amqp_socket_open(s, "127.0.0.1", port) != AMQP_STATUS_OK) return 1;
    amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
    amqp_channel_open(c, 1);
    amqp_bytes_t queue = amqp_cstring_bytes("rabbitmq-c-baseline.requests");
    amqp_queue_declare(c, 1, queue, 0, 0, 0, 1, amqp_empty_table);
    amqp_queue_declare_ok_t *r = amqp_queue_declare(c, 1, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
    amqp_bytes_t reply = amqp_bytes_malloc_dup(r->queue);
    amqp_bytes_t exchange = amqp_empty_bytes, key = queue;
    if (!simple) {
        exchange = amqp_cstring_bytes("rabbitmq-c-baseline.topic");
        key = amqp_cstring_bytes("methods.benchEcho");
        amqp_exchange_declare(c, 1, exchange, amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
        amqp_queue_bind(c, 1, queue, exchange, key, amqp_empty_table);
        amqp_basic_qos(c, 1, 0, 256, 0);
    }
    amqp_basic_consume(c, 1, queue, amqp_cstring_bytes("server"), 0, simple, 0, amqp_empty_table);
    amqp_basic_consume(c, 1, reply, amqp_cstring_bytes("client"), 0, 1, 0, amqp_empty_table);

    const char *body = "{\"sequence\":1,\"payload\":\"xxxxxxxxxxxxxxxx\"}";
    double *sent = calloc(total, sizeof(double)), *latency = calloc(total, sizeof(double));
    char id[32];
    amqp_basic_properties_t p;
    p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_REPLY_TO_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG;
    p.content_type = amqp_cstring_bytes("application/json");
    p.reply_to = reply;
    int issued = 0, done = 0;
    double started = now();
#define SEND_REQUEST()                                                                           \
    do {                                                                                         \
        snprintf(id, sizeof id, "%d", issued);                                                   \
        p.correlation_id = amqp_cstring_bytes(id);                                               \
        sent[issued++] = now();                                                                  \
        amqp_basic_publish(c, 1, exchange, key, 0, 0, &p, amqp_cstring_bytes(body));             \
    } while (0)
    while (issued < inflight && issued < total) SEND_REQUEST();
    while (done < total) {
        amqp_envelope_t e;
        amqp_maybe_release_buffers(c);
        if (amqp_consume_message(c, &e, NULL, 0).reply_type != AMQP_RESPONSE_NORMAL) return 1;
        if (e.consumer_tag.len == 6 && memcmp(e.consumer_tag.bytes, "server", 6) == 0) {
            amqp_basic_properties_t rp;
            rp._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG;
            rp.content_type = amqp_cstring_bytes("application/json");
            rp.correlation_id = e.message.properties.correlation_id;
            amqp_basic_publish(c, 1, amqp_empty_bytes, e.message.properties.reply_to, 0, 0, &rp, e.message.body);
            if (!simple) amqp_basic_ack(c, 1, e.delivery_tag, 0);
        } else {
            char text[32] = {0};
            memcpy(text, e.message.properties.correlation_id.bytes, e.message.properties.correlation_id.len < 31 ? e.message.properties.correlation_id.len : 31);
            int n = atoi(text);
            latency[done++] = now() - sent[n];
            if (issued < total) SEND_REQUEST();
        }
        amqp_destroy_envelope(&e);
    }
    double elapsed = now() - started;
    qsort(latency, total, sizeof(double), compare);
    printf("{\"case\": \"rabbitmq-c rpc%s\", \"rate_per_s\": %.0f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"calls\": %d, \"concurrency\": %d}\n",
           simple ? " (default exchange, auto-ack)" : " (topic exchange, manual ack)", total / elapsed,
           latency[total / 2] * 1000, latency[(int)(total * 0.99)] * 1000, total, inflight);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
    return 0;
}
