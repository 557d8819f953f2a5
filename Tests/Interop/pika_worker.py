#!/usr/bin/env python3
"""An external task worker in Python (pika): runs a job the built-in task runner does not have.

Usage: pika_worker.py AMQP_URL EXCHANGE_PREFIX JOB_NAME [--count N] [--idle-timeout SECONDS]

It follows docs/external-workers.md:

- a durable queue `<prefix>.rackbus.jobs.<JOB_NAME>`, shared by every replica of this worker,
  bound to `<prefix>.task` with `run.*`, consumed with manual acks and a prefetch of 8;
- a private (exclusive) queue bound to `<prefix>.task` with `cancel.*`, declared first so that
  no cancel of a task it takes is missed;
- for each `run.<taskId>` (a TaskSpec): a run of another job is acked and skipped; a run of
  JOB_NAME is run, its end is published as `task.finished.<taskId>` on `<prefix>.events`
  (persistent, confirmed by the broker), and only then is the run acked.

The job (`Job.External.Echo` is the one the tests use; any JOB_NAME behaves the same):
  options.fail == true   -> failed, with an error text
  options.sleepMs = N    -> waits N ms first; a cancel meanwhile ends it cancelled, or timeout
                            when the cancel's errName is TaskTimeoutError
  otherwise              -> succeeded, context {"echoed": options.message, "worker": "pika"}

Runs are handled as events, not one at a time: up to 8 sleeping runs wait side by side.

It prints one JSON line per finished task (the report it published) and exits 0 after
`--count N` finished tasks (0: no limit). It never hangs: after `--idle-timeout` seconds
(default 30; 0 disables) without a delivery or a report it prints an error JSON line and
exits 1, as it does on any other failure. Note that a running sleepMs job is not activity:
a sleep longer than the idle timeout needs a longer --idle-timeout.
"""
import argparse
import collections
import json
import logging
import sys
import time
import uuid

import pika

PREFETCH = 8
TIMEOUT_ERROR = "TaskTimeoutError"
CANCEL_ERROR = "TaskCancellationError"
# How many finished reports (for redelivered runs) and early cancels to remember.
MEMORY = 1000


class IdleTimeout(Exception):
    pass


class Worker:
    def __init__(self, url, prefix, job, count, idle_timeout):
        self.url = url
        self.prefix = prefix
        self.job = job
        self.count = count
        self.idle_timeout = idle_timeout
        self.task_exchange = f"{prefix}.task"
        self.events_exchange = f"{prefix}.events"
        self.queue = f"{prefix}.rackbus.jobs.{job}"
        # Deliveries land here from pika's callbacks and are handled by the main loop, so that
        # no publish happens inside a callback.
        self.inbox = collections.deque()
        # taskId -> {"spec", "tag", "deadline"}: sleeping runs, not yet acked.
        self.running = {}
        # taskId -> the report published for it: a redelivered run is answered, not redone.
        self.reports = collections.OrderedDict()
        # taskId -> errName of a cancel that came before its run.
        self.early_cancels = collections.OrderedDict()
        self.finished = 0
        self.last_activity = time.monotonic()

    # MARK: Setup

    def connect(self):
        self.connection = pika.BlockingConnection(pika.URLParameters(self.url))
        channel = self.connection.channel()
        # Confirms: basic_publish returns once the broker has the report, so acking the run
        # afterwards never loses a task's end.
        channel.confirm_delivery()
        for exchange in (self.task_exchange, self.events_exchange):
            # The flags RackBus and RackHD declare every exchange with, so any side may go first.
            channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True, auto_delete=False)

        cancels = channel.queue_declare(queue="", exclusive=True, auto_delete=True).method.queue
        channel.queue_bind(queue=cancels, exchange=self.task_exchange, routing_key="cancel.*")
        channel.basic_consume(queue=cancels, on_message_callback=self.on_cancel, auto_ack=True)

        channel.queue_declare(queue=self.queue, durable=True, exclusive=False, auto_delete=False)
        channel.queue_bind(queue=self.queue, exchange=self.task_exchange, routing_key="run.*")
        channel.basic_qos(prefetch_count=PREFETCH)
        channel.basic_consume(queue=self.queue, on_message_callback=self.on_run, auto_ack=False)
        self.channel = channel

    def on_run(self, _channel, method, _properties, body):
        self.inbox.append(("run", method.delivery_tag, body))

    def on_cancel(self, _channel, _method, _properties, body):
        self.inbox.append(("cancel", None, body))

    # MARK: Loop

    def run(self):
        self.connect()
        try:
            while self.count == 0 or self.finished < self.count:
                self.connection.process_data_events(time_limit=0.05)
                while self.inbox and (self.count == 0 or self.finished < self.count):
                    kind, tag, body = self.inbox.popleft()
                    self.last_activity = time.monotonic()
                    if kind == "run":
                        self.handle_run(tag, body)
                    else:
                        self.handle_cancel(body)
                self.finish_sleepers()
                if self.idle_timeout > 0 and time.monotonic() - self.last_activity > self.idle_timeout:
                    raise IdleTimeout(
                        f"no delivery or report for {self.idle_timeout:g} s "
                        f"({self.finished} of {self.count or 'unlimited'} tasks finished, {len(self.running)} running)"
                    )
        finally:
            # Unacked runs (of other tasks) go back to the queue for another replica.
            try:
                self.connection.close()
            except Exception:
                pass

    def handle_run(self, tag, body):
        try:
            spec = json.loads(body)
            task_id = spec["taskId"]
            job = spec["job"]
        except (ValueError, KeyError, TypeError) as error:
            # Without a taskId there is nobody to report to: drop it (dead-letters if configured).
            log(f"dropping a malformed run: {error!r}")
            self.channel.basic_reject(delivery_tag=tag, requeue=False)
            return
        if job != self.job:
            # Another job's run: the worker that has that job takes it from its own queue.
            self.channel.basic_ack(delivery_tag=tag)
            return
        if task_id in self.reports:
            # Delivered again (the Scheduler handed it on twice, or a replica crashed after
            # reporting): say again how it ended, do not run it again.
            self.publish(self.reports[task_id])
            self.channel.basic_ack(delivery_tag=tag)
            return
        if task_id in self.running:
            # A duplicate of a run in progress: the first delivery reports.
            self.channel.basic_ack(delivery_tag=tag)
            return

        options = spec.get("options") or {}
        if task_id in self.early_cancels:
            self.finish(spec, tag, cancelled_state(self.early_cancels.pop(task_id)))
        elif options.get("fail") is True:
            self.finish(spec, tag, ("failed", f"{job} failed as asked (options.fail)", None))
        elif isinstance(options.get("sleepMs"), (int, float)) and options["sleepMs"] > 0:
            self.running[task_id] = {"spec": spec, "tag": tag, "deadline": time.monotonic() + options["sleepMs"] / 1000}
        else:
            self.finish(spec, tag, succeeded(spec))

    def handle_cancel(self, body):
        try:
            cancel = json.loads(body)
            task_id = cancel["taskId"]
        except (ValueError, KeyError, TypeError):
            return
        err_name = cancel.get("errName") or CANCEL_ERROR
        if task_id in self.running:
            entry = self.running.pop(task_id)
            self.finish(entry["spec"], entry["tag"], cancelled_state(err_name))
        elif task_id not in self.reports:
            # Every worker hears every cancel; remember it in case the run is still queued.
            remember(self.early_cancels, task_id, err_name)

    def finish_sleepers(self):
        now = time.monotonic()
        for task_id in [task_id for task_id, entry in self.running.items() if entry["deadline"] <= now]:
            if self.count and self.finished >= self.count:
                return
            entry = self.running.pop(task_id)
            self.finish(entry["spec"], entry["tag"], succeeded(entry["spec"]))

    # MARK: Reporting

    def finish(self, spec, tag, outcome):
        state, error, context = outcome
        report = {
            "taskId": spec["taskId"],
            "taskName": spec.get("taskName", ""),
            "label": spec.get("label", ""),
            "graphId": spec.get("graphId", ""),
            "graphName": spec.get("graphName", ""),
            "state": state,
        }
        if error is not None:
            report["error"] = error
        if context is not None:
            report["context"] = context
        # Report first, ack second: a crash in between redelivers the run, never loses its end.
        self.publish(report)
        self.channel.basic_ack(delivery_tag=tag)
        remember(self.reports, spec["taskId"], report)
        self.finished += 1
        self.last_activity = time.monotonic()
        print(json.dumps(report), flush=True)

    def publish(self, report):
        self.channel.basic_publish(
            exchange=self.events_exchange,
            routing_key=f"task.finished.{report['taskId']}",
            body=json.dumps(report),
            properties=pika.BasicProperties(
                content_type="application/json",
                type="Object",
                delivery_mode=2,
                message_id=f"pika-worker-{uuid.uuid4().hex}",
                timestamp=int(time.time()),
                app_id="rackbus-pika-worker",
            ),
        )


def succeeded(spec):
    options = spec.get("options") or {}
    return ("succeeded", None, {"echoed": options.get("message"), "worker": "pika"})


def cancelled_state(err_name):
    return ("timeout" if err_name == TIMEOUT_ERROR else "cancelled", err_name, None)


def remember(memory, key, value):
    memory[key] = value
    while len(memory) > MEMORY:
        memory.popitem(last=False)


def log(text):
    print(text, file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser(description="An external RackBus task worker (pika).")
    parser.add_argument("url", help="AMQP URL, e.g. amqp://guest:guest@localhost:5672/")
    parser.add_argument("prefix", help="exchange prefix (`on` in production)")
    parser.add_argument("job", help="the job this worker runs, e.g. Job.External.Echo")
    parser.add_argument("--count", type=int, default=0, help="exit 0 after N finished tasks (0: no limit)")
    parser.add_argument("--idle-timeout", type=float, default=30, help="exit 1 after this many idle seconds (0: never)")
    arguments = parser.parse_args()
    # pika logs to stderr on its own; the tests read stdout and stderr together.
    logging.getLogger("pika").addHandler(logging.NullHandler())
    logging.getLogger("pika").propagate = False

    worker = Worker(arguments.url, arguments.prefix, arguments.job, arguments.count, arguments.idle_timeout)
    try:
        worker.run()
    except Exception as error:
        print(json.dumps({"error": str(error) or repr(error), "finished": worker.finished}), flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
