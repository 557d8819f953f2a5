/* Baseline: the messages of a task graph without anything else. Each task of a chain makes the
 * three hops of the conventions: `schedule` (scheduler exchange) -> `run.<task>` (task exchange)
 * -> `task.finished.<task>` (events exchange), each through a topic exchange into a durable
 * queue consumed with manual acks, and a finished task starts the next task of its chain.
 * Nothing is decoded or stored. `--persistent` marks the messages persistent and waits for
 * publisher confirms before acknowledging, as the services do. One thread, one connection.
 * Prints one JSON line like rackbus-bench.
 * Usage: taskchain PORT GRAPHS IN_FLIGHT [--persistent] */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include "clock.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TASKS_PER_GRAPH 10

static amqp_connection_state_t c;
static int persistent;

static void declare(const char *exchange, const char *queue, const char *pattern) {
    amqp_exchange_declare(c, 1, amqp_cstring_bytes(exchange), amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
    amqp_queue_declare(c, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0, amqp_empty_table);
    amqp_queue_purge(c, 1, amqp_cstring_bytes(queue));
    amqp_queue_bind(c, 1, amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange), amqp_cstring_bytes(pattern), amqp_empty_table);
    amqp_basic_consume(c, 1, amqp_cstring_bytes(queue), amqp_cstring_bytes(queue), 0, 0, 0, amqp_empty_table);
}

/* The body names the graph and the task's position in its chain: "graph/step". */
static void send(const char *exchange, const char *key, int graph, int step) {
    char body[64];
    snprintf(body, sizeof body, "{\"graph\":%d,\"step\":%d,\"payload\":\"xxxxxxxxxxxxxxxxxxxxxxxx\"}", graph, step);
    amqp_basic_properties_t p;
    p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    p.content_type = amqp_cstring_bytes("application/json");
    p.delivery_mode = persistent ? 2 : 1;
    amqp_basic_publish(c, 1, amqp_cstring_bytes(exchange), amqp_cstring_bytes(key), 0, 0, &p, amqp_cstring_bytes(body));
}

int main(int argc, char **argv) {
    if (argc < 4) return 64;
    int port = atoi(argv[1]), graphs = atoi(argv[2]), inflight = atoi(argv[3]);
    persistent = argc > 4 && strcmp(argv[4], "--persistent") == 0;
    c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    if (amqp_socket_open(s, "127.0.0.1", port) != AMQP_STATUS_OK) return 1;
    amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
    amqp_channel_open(c, 1);
    amqp_basic_qos(c, 1, 0, 256, 0);
    if (persistent) amqp_confirm_select(c, 1);
    declare("taskchain-baseline.scheduler", "taskchain-baseline.scheduler", "schedule");
    declare("taskchain-baseline.task", "taskchain-baseline.runner", "run.*");
    declare("taskchain-baseline.events", "taskchain-baseline.finished", "task.finished.*");

    /* With confirms, a consumed message is acknowledged only once what it caused is confirmed:
     * acks wait in order for the confirm of the publish with the same sequence number. */
    uint64_t *ack_after = calloc(((size_t)graphs * TASKS_PER_GRAPH * 3 + 1) * 2, sizeof(uint64_t));
    uint64_t published = 0, confirmed = 0, ack_head = 0, ack_tail = 0;
    double *started_at = calloc(graphs, sizeof(double)), *latency = calloc(graphs, sizeof(double));
    int issued = 0, done = 0;
    char key[64];
    double started = now();
    for (; issued < inflight && issued < graphs; issued++) {
        started_at[issued] = now();
        send("taskchain-baseline.scheduler", "schedule", issued, 0);
        published++;
    }
    while (done < graphs) {
        amqp_envelope_t e;
        amqp_maybe_release_buffers(c);
        amqp_rpc_reply_t r = amqp_consume_message(c, &e, NULL, 0);
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
            amqp_frame_t frame;
            if (amqp_simple_wait_frame(c, &frame) != AMQP_STATUS_OK) return 1;
            if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
                amqp_basic_ack_t *ack = frame.payload.method.decoded;
                confirmed = ack->delivery_tag;
                while (ack_head < ack_tail && ack_after[ack_head * 2] <= confirmed) {
                    amqp_basic_ack(c, 1, ack_after[ack_head * 2 + 1], 0);
                    ack_head++;
                }
            }
            continue;
        }
        if (r.reply_type != AMQP_RESPONSE_NORMAL) return 1;
        int graph = 0, step = 0;
        sscanf((const char *)e.message.body.bytes, "{\"graph\":%d,\"step\":%d", &graph, &step);
        const char *queue = (const char *)e.consumer_tag.bytes;
        size_t length = e.consumer_tag.len;
        int finished_graph = 0;
        if (length == strlen("taskchain-baseline.scheduler") && memcmp(queue, "taskchain-baseline.scheduler", length) == 0) {
            snprintf(key, sizeof key, "run.%d-%d", graph, step);
            send("taskchain-baseline.task", key, graph, step);
            published++;
        } else if (length == strlen("taskchain-baseline.runner") && memcmp(queue, "taskchain-baseline.runner", length) == 0) {
            snprintf(key, sizeof key, "task.finished.%d-%d", graph, step);
            send("taskchain-baseline.events", key, graph, step);
            published++;
        } else if (step + 1 < TASKS_PER_GRAPH) {
            send("taskchain-baseline.scheduler", "schedule", graph, step + 1);
            published++;
        } else {
            finished_graph = 1;
        }
        if (persistent && !finished_graph) {
            ack_after[ack_tail * 2] = published;
            ack_after[ack_tail * 2 + 1] = e.delivery_tag;
            ack_tail++;
        } else {
            amqp_basic_ack(c, 1, e.delivery_tag, 0);
        }
        if (finished_graph) {
            latency[done++] = now() - started_at[graph];
            if (issued < graphs) {
                started_at[issued] = now();
                send("taskchain-baseline.scheduler", "schedule", issued++, 0);
                published++;
            }
        }
        amqp_destroy_envelope(&e);
    }
    double elapsed = now() - started;
    qsort(latency, graphs, sizeof(double), compare);
    printf("{\"case\": \"rabbitmq-c task chain (3 hops per task%s)\", \"rate_per_s\": %.0f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
           "\"graphs\": %d, \"graphs_in_flight\": %d, \"tasks_per_graph\": %d}\n",
           persistent ? ", persistent, confirmed" : "", graphs * TASKS_PER_GRAPH / elapsed, latency[graphs / 2] * 1000,
           latency[(int)(graphs * 0.99)] * 1000, graphs, inflight, TASKS_PER_GRAPH);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
    return 0;
}
