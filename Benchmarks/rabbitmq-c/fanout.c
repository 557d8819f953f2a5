/* Baseline: one publisher and K subscribers (a connection and thread each, auto-ack), one
 * topic exchange, rabbitmq-c alone. Prints one JSON line like rackbus-bench.
 * Usage: fanout PORT EVENTS SUBSCRIBERS */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include "clock.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int port, total;
static pthread_barrier_t ready;

static amqp_connection_state_t connect_broker(void) {
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    if (amqp_socket_open(s, "127.0.0.1", port) != AMQP_STATUS_OK) exit(1);
    amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
    amqp_channel_open(c, 1);
    return c;
}

static void *subscriber(void *unused) {
    (void)unused;
    amqp_connection_state_t c = connect_broker();
    amqp_queue_declare_ok_t *q = amqp_queue_declare(c, 1, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
    amqp_bytes_t name = amqp_bytes_malloc_dup(q->queue);
    amqp_queue_bind(c, 1, name, amqp_cstring_bytes("rabbitmq-c-baseline.fanout"), amqp_cstring_bytes("bench.#"), amqp_empty_table);
    amqp_basic_consume(c, 1, name, amqp_empty_bytes, 0, 1, 1, amqp_empty_table);
    pthread_barrier_wait(&ready);
    for (int n = 0; n < total; n++) {
        amqp_envelope_t e;
        amqp_maybe_release_buffers(c);
        if (amqp_consume_message(c, &e, NULL, 0).reply_type != AMQP_RESPONSE_NORMAL) exit(1);
        amqp_destroy_envelope(&e);
    }
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) return 64;
    port = atoi(argv[1]);
    total = atoi(argv[2]);
    int k = atoi(argv[3]);
    if (k < 1 || k > 64) return 64;
    amqp_connection_state_t p = connect_broker();
    amqp_exchange_declare(p, 1, amqp_cstring_bytes("rabbitmq-c-baseline.fanout"), amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
    pthread_barrier_init(&ready, NULL, k + 1);
    pthread_t threads[64];
    for (int i = 0; i < k; i++) pthread_create(&threads[i], NULL, subscriber, NULL);
    pthread_barrier_wait(&ready);
    amqp_basic_properties_t props;
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    double started = now();
    for (int i = 0; i < total; i++)
        amqp_basic_publish(p, 1, amqp_cstring_bytes("rabbitmq-c-baseline.fanout"), amqp_cstring_bytes("bench.event.1"), 0, 0, &props,
                           amqp_cstring_bytes("{\"sequence\":1,\"sentAt\":123456789}"));
    for (int i = 0; i < k; i++) pthread_join(threads[i], NULL);
    double elapsed = now() - started;
    printf("{\"case\": \"rabbitmq-c fanout\", \"rate_per_s\": %.0f, \"messages\": %d, \"subscribers\": %d}\n", (double)total * k / elapsed, total, k);
    amqp_connection_close(p, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(p);
    return 0;
}
