"""The worker against the real RabbitMQ (TASKER_AMQP_URL, default the local one), on a
prefix of its own: a small stand-in orchestrator declares the queues, dispatches step
messages, reads the results and answers task requests. Everything is deleted afterwards."""
import json
import os
import shutil
import subprocess
import threading
import time
import unittest
import uuid

import pika

from tasker_worker import PermanentError, RetryableError, Worker
from tests.broker_user import BrokerUser
from tests.test_messages import step_message, steps_message

AMQP_URL = os.environ.get("TASKER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")


def rabbitmqctl(*args):
    """rabbitmqctl's output (quiet): the tests that drop a connection from the broker side use it."""
    return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=15).stdout


def has_rabbitmqctl():
    if shutil.which("rabbitmqctl") is None:
        return False
    try:
        rabbitmqctl("status")
        return True
    except (OSError, subprocess.SubprocessError):
        return False


class FakeOrchestrator:
    def __init__(self):
        self.prefix = "pytest" + uuid.uuid4().hex[:8]
        self.conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self.ch = self.conn.channel()
        p = self.prefix
        self.exchanges = [(f"{p}.steps", "direct"), (f"{p}.results", "topic"), (f"{p}.dead", "topic"), (f"{p}.task_requests", "topic"), (f"{p}.control", "fanout")]
        for name, kind in self.exchanges:
            self.ch.exchange_declare(name, kind, durable=True)
        self.queues = [f"{p}.results", f"{p}.dead_letters", f"{p}.task_requests"]
        for q, ex in zip(self.queues, [f"{p}.results", f"{p}.dead", f"{p}.task_requests"]):
            self.ch.queue_declare(q, durable=True)
            self.ch.queue_bind(q, ex, "#")
        self.namespaces = []
        self.seen = {}
        #: Every message read from each queue, as received (a step_results message whole).
        self.received = {}

    def namespace(self):
        ns = f"ns_{uuid.uuid4().hex[:8]}"
        q = f"{self.prefix}.steps.{ns}"
        self.ch.queue_declare(q, durable=True, arguments={"x-queue-type": "quorum"})
        self.ch.queue_bind(q, f"{self.prefix}.steps", ns)
        self.namespaces.append(ns)
        return ns

    def dispatch(self, message, raw=None):
        self.ch.basic_publish(f"{self.prefix}.steps", message["namespace"], raw if raw is not None else json.dumps(message).encode(), pika.BasicProperties(delivery_mode=2, message_id=message["step_id"]))

    def dispatch_steps(self, ns, message, raw=None, message_id="steps", headers=None):
        """A ``steps`` message: several step messages in one, AMQP type ``steps``."""
        body = raw if raw is not None else json.dumps(message).encode()
        self.ch.basic_publish(f"{self.prefix}.steps", ns, body, pika.BasicProperties(content_type="application/json", delivery_mode=2, message_id=message_id, type="steps", headers=headers))

    def wait(self, queue, predicate, timeout=10.0):
        """The first message on the queue matching the predicate; others are kept for later waits.
        The results of a ``step_results`` message are seen one by one, with its properties."""
        seen = self.seen.setdefault(queue, [])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, (decoded, props, body) in enumerate(seen):
                if predicate(decoded, props, body):
                    return seen.pop(i)
            method, props, body = self.ch.basic_get(queue, auto_ack=True)
            if method:
                try:
                    decoded = json.loads(body)
                except ValueError:
                    decoded = None
                self.received.setdefault(queue, []).append((decoded, props, body))
                if isinstance(decoded, dict) and decoded.get("message_type") == "step_results":
                    seen.extend((r, props, json.dumps(r).encode()) for r in decoded["results"])
                else:
                    seen.append((decoded, props, body))
                continue
            self.conn.sleep(0.02)
        raise AssertionError(f"nothing matching on {queue} within {timeout} s")

    def result_for(self, step_id, timeout=10.0):
        return self.wait(f"{self.prefix}.results", lambda d, p, b: d and d.get("step_id") == step_id, timeout)

    def depth(self, ns):
        return self.ch.queue_declare(f"{self.prefix}.steps.{ns}", passive=True).method.message_count

    def answer_task_requests(self, stop):
        conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        ch = conn.channel()
        while not stop.is_set():
            method, props, body = ch.basic_get(f"{self.prefix}.task_requests", auto_ack=True)
            if not method:
                conn.sleep(0.02)
                continue
            req = json.loads(body)
            self.requests.append(req)
            reply = {"protocol_version": 1, "message_type": "task_reply", "ok": True, "created": True,
                     "task": {"id": "tsk_child", "namespace": req["namespace"], "name": req["name"], "parent_task_id": req["parent"]["task_id"]}}
            ch.basic_publish("", props.reply_to, json.dumps(reply).encode(), pika.BasicProperties(correlation_id=props.correlation_id))
        conn.close()

    def close(self):
        for ns in self.namespaces:
            self.ch.queue_delete(f"{self.prefix}.steps.{ns}")
        for q in self.queues:
            self.ch.queue_delete(q)
        for name, _ in self.exchanges:
            self.ch.exchange_delete(name)
        self.conn.close()


def validate(ctx):
    amount = ctx.get_input("refund_amount")
    if amount is None or amount <= 0:
        raise PermanentError("Refund amount must be positive", code="INVALID_AMOUNT", details={"amount": amount})
    return {"payment_validated": True, "amount": amount, "init": ctx.initialization, "earlier": ctx.get_dependency_result("earlier")}


def busy(ctx):
    raise RetryableError("gateway busy", code="GATEWAY_BUSY", retry_after_ms=2000)


def slow(ctx):
    time.sleep(ctx.get_input("ms", 300) / 1000)
    return {"slept": True, "thread": threading.current_thread().name}


def delegate(ctx):
    out = ctx.create_task("payments", "process_refund", {"payment_id": "pay_1", "refund_amount": 5})
    return {"payment_task_id": out["task"]["id"]}


CANCELLABLE_STARTED = threading.Event()


def until_cancelled(ctx):
    CANCELLABLE_STARTED.set()
    while not ctx.cancelled:
        time.sleep(0.01)
    return {"cancelled": True}


COUNTING = {"running": 0, "max": 0}
COUNTING_LOCK = threading.Lock()


def counting(ctx):
    """Counts the handlers running at once."""
    with COUNTING_LOCK:
        COUNTING["running"] += 1
        COUNTING["max"] = max(COUNTING["max"], COUNTING["running"])
    time.sleep(0.2)
    with COUNTING_LOCK:
        COUNTING["running"] -= 1
    return {"counted": True}


def delegate_and_wait(ctx):
    return ctx.wait_for(ctx.create_task("payments", "process_refund", {})["task"]["id"])


HANDLERS = {"validate": validate, "busy": busy, "slow": slow, "delegate": delegate, "delegate_and_wait": delegate_and_wait, "until_cancelled": until_cancelled, "counting": counting}


class WorkerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.orch = FakeOrchestrator()
        cls.orch.requests = []
        cls.stop_answering = threading.Event()
        cls.answerer = threading.Thread(target=cls.orch.answer_task_requests, args=(cls.stop_answering,), daemon=True)
        cls.answerer.start()

    @classmethod
    def tearDownClass(cls):
        cls.stop_answering.set()
        cls.answerer.join(5)
        cls.orch.close()

    def start_worker(self, handlers=HANDLERS, **options):
        ns = self.orch.namespace()
        w = Worker(ns, handlers, prefix=self.orch.prefix, **{"amqp_url": AMQP_URL, **options})
        t = threading.Thread(target=w.run, kwargs={"install_signal_handlers": False}, daemon=True)
        t.start()
        self.addCleanup(lambda: (w.stop(), t.join(15)))
        return ns, w, t

    def test_a_step_result_is_published_with_its_properties_and_the_step_acked(self):
        ns, w, t = self.start_worker()
        m = step_message(namespace=ns, step_id="stp_ok", idempotency_key="stp_ok:1")
        self.orch.dispatch(m)
        r, props, _ = self.orch.result_for("stp_ok")
        self.assertEqual(r["status"], "success")
        self.assertEqual(r["result"], {"payment_validated": True, "amount": 49.99, "init": {"limit": 500}, "earlier": {"ok": True}})
        self.assertEqual((r["task_id"], r["namespace"], r["attempt"], r["worker_id"]), ("tsk_1", ns, 1, w.worker_id))
        self.assertEqual((props.content_type, props.delivery_mode, props.message_id, props.type), ("application/json", 2, "stp_ok:1", "step_result"))
        self.assertEqual(props.user_id, pika.URLParameters(AMQP_URL).credentials.username)
        w.stop()
        t.join(15)
        self.assertEqual(self.orch.depth(ns), 0)

    def test_results_carry_the_user_id_of_the_url_user_decoded_from_percent_escapes_with_plus_kept(self):
        # The origin check (docs/protocol.md, section 2) applies a namespace's results only when
        # their user_id is that namespace's broker user, and RabbitMQ refuses a user_id that is
        # not the connection's: the worker must log in as the URL's user, decoded as RFC 3986
        # says, and sign with that same user.
        user = BrokerUser(AMQP_URL, self.orch.prefix, "pytest")
        self.addCleanup(user.delete)  # runs after the worker's cleanup, added later
        ns, _, _ = self.start_worker(amqp_url=user.url)
        self.orch.dispatch(step_message(namespace=ns, step_id="stp_user"))
        r, props, _ = self.orch.result_for("stp_user")
        self.assertEqual(r["status"], "success")
        self.assertEqual(props.user_id, user.name)

    def test_permanent_and_retryable_errors_and_a_missing_handler(self):
        ns, _, _ = self.start_worker()
        self.orch.dispatch(step_message(namespace=ns, step_id="stp_perm", input={"refund_amount": -1}))
        self.orch.dispatch(step_message(namespace=ns, step_id="stp_busy", handler={"callable": "busy", "method": None, "initialization": {}}))
        self.orch.dispatch(step_message(namespace=ns, step_id="stp_none", handler={"callable": "nope", "method": None, "initialization": {}}))
        self.assertEqual(self.orch.result_for("stp_perm")[0]["error"], {"kind": "permanent", "code": "INVALID_AMOUNT", "message": "Refund amount must be positive", "details": {"amount": -1}})
        self.assertEqual(self.orch.result_for("stp_busy")[0]["error"], {"kind": "retryable", "code": "GATEWAY_BUSY", "message": "gateway busy", "retry_after_ms": 2000})
        err = self.orch.result_for("stp_none")[0]["error"]
        self.assertEqual((err["kind"], err["code"]), ("permanent", "HANDLER_NOT_FOUND"))
        self.assertIn("'nope'", err["message"])
        self.assertIn(ns, err["message"])
        self.assertIn("busy, counting, delegate, delegate_and_wait, slow, until_cancelled, validate", err["message"])

    def test_steps_run_concurrently_up_to_the_concurrency(self):
        ns, _, _ = self.start_worker(concurrency=3)
        t0 = time.monotonic()
        for i in range(3):
            self.orch.dispatch(step_message(namespace=ns, step_id=f"stp_c{i}", input={"ms": 400}, handler={"callable": "slow", "method": None, "initialization": {}}))
        for i in range(3):
            self.orch.result_for(f"stp_c{i}")
        self.assertLess(time.monotonic() - t0, 1.1)

    def test_a_handler_past_its_timeout_gets_handler_timeout_at_the_deadline(self):
        ns, _, _ = self.start_worker()
        t0 = time.monotonic()
        self.orch.dispatch(step_message(namespace=ns, step_id="stp_to", timeout_ms=200, input={"ms": 1500}, handler={"callable": "slow", "method": None, "initialization": {}}))
        r = self.orch.result_for("stp_to")[0]
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual((r["error"]["kind"], r["error"]["code"]), ("retryable", "HANDLER_TIMEOUT"))

    def test_malformed_messages_are_parked_with_the_reason_in_headers(self):
        ns, _, _ = self.start_worker()
        self.orch.dispatch({"namespace": ns, "step_id": "bad"}, raw=b"not json")
        _, props, body = self.orch.wait(f"{self.orch.prefix}.dead_letters", lambda d, p, b: p.message_id == "bad")
        self.assertEqual(body, b"not json")
        self.assertEqual(props.headers["x-tasker-code"], "INVALID_MESSAGE")
        self.assertEqual(props.headers["x-tasker-source-queue"], f"{self.orch.prefix}.steps.{ns}")
        self.assertTrue(props.headers["x-tasker-reason"])

    def test_a_steps_message_runs_each_step_parks_a_bad_one_alone_and_is_acked_once(self):
        ns, w, t = self.start_worker()
        wrong = step_message(namespace="elsewhere", step_id="stp_s2", idempotency_key="stp_s2:1")
        steps = [
            step_message(namespace=ns, step_id="stp_s1", idempotency_key="stp_s1:1"),
            wrong,
            step_message(namespace=ns, step_id="stp_s3", idempotency_key="stp_s3:1", input={"ms": 50}, handler={"callable": "slow", "method": None, "initialization": {}}),
        ]
        self.orch.dispatch_steps(ns, steps_message(steps), message_id="stp_s1:1+2", headers={"x-test": "kept"})
        r1, p1, _ = self.orch.result_for("stp_s1")
        self.assertEqual((r1["status"], r1["result"]["payment_validated"], p1.type, p1.message_id), ("success", True, "step_result", "stp_s1:1"))
        r3, p3, _ = self.orch.result_for("stp_s3")
        self.assertEqual((r3["status"], r3["result"]["slept"], p3.message_id), ("success", True, "stp_s3:1"))
        parked, props, body = self.orch.wait(f"{self.orch.prefix}.dead_letters", lambda d, p, b: d and d.get("step_id") == "stp_s2")
        self.assertEqual(parked, wrong)  # its own JSON, not the envelope
        self.assertEqual(body, json.dumps(wrong, separators=(",", ":")).encode())
        self.assertEqual((props.type, props.content_type, props.delivery_mode), ("step", "application/json", 2))
        self.assertEqual(props.headers["x-tasker-code"], "INVALID_MESSAGE")
        self.assertEqual(
            props.headers["x-tasker-reason"],
            f"step message 2 of 3 in a steps message is for namespace 'elsewhere' but came from {self.orch.prefix}.steps.{ns}, the queue of '{ns}'",
        )
        self.assertEqual(props.headers["x-tasker-source-queue"], f"{self.orch.prefix}.steps.{ns}")
        self.assertEqual(props.headers["x-test"], "kept")
        w.stop()
        t.join(15)
        self.assertFalse(t.is_alive())
        self.assertEqual(self.orch.depth(ns), 0)  # acked: not given back at stop
        with self.assertRaises(AssertionError):  # answered once, not redelivered
            self.orch.result_for("stp_s1", timeout=0.3)

    def test_a_steps_message_with_a_broken_envelope_is_parked_whole_with_its_body_unchanged(self):
        ns, w, t = self.start_worker()
        raw = json.dumps(steps_message([])).encode()
        self.orch.dispatch_steps(ns, None, raw=raw, message_id="steps_empty")
        _, props, body = self.orch.wait(f"{self.orch.prefix}.dead_letters", lambda d, p, b: p.message_id == "steps_empty")
        self.assertEqual(body, raw)
        self.assertEqual((props.type, props.content_type), ("steps", "application/json"))
        self.assertEqual(props.headers["x-tasker-code"], "INVALID_MESSAGE")
        self.assertEqual(props.headers["x-tasker-reason"], "steps message: steps must be an array of 1 to 100 step messages; it has 0")
        w.stop()
        t.join(15)
        self.assertEqual(self.orch.depth(ns), 0)

    def test_a_result_not_confirmed_gives_the_whole_steps_message_back_after_a_pause(self):
        ns, w, t = self.start_worker()
        accept_results = self.refuse_results(ns)
        steps = [step_message(namespace=ns, step_id=f"stp_r{i}") for i in (1, 2)]
        self.orch.dispatch_steps(ns, steps_message(steps))
        first = [self.orch.result_for(f"stp_r{i}")[0] for i in (1, 2)]
        t0 = time.monotonic()
        accept_results()
        again = [self.orch.result_for(f"stp_r{i}")[0] for i in (1, 2)]
        self.assertGreater(time.monotonic() - t0, 0.7)
        self.assertEqual([r["delivery_count"] for r in first + again], [1, 1, 2, 2])  # both steps came back
        w.stop()
        t.join(15)
        self.assertEqual(self.orch.depth(ns), 0)

    def refuse_results(self, ns):
        """A queue that refuses every result of the namespace, so the broker nacks their publishes; returns what ends that."""
        full = f"{self.orch.prefix}.full_{ns}"
        self.orch.ch.queue_declare(full, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
        self.addCleanup(lambda: self.orch.ch.queue_delete(full))
        self.orch.ch.queue_bind(full, f"{self.orch.prefix}.results", ns)
        return lambda: self.orch.ch.queue_unbind(full, f"{self.orch.prefix}.results", ns)

    def result_messages(self, ns):
        """The result messages of the namespace read so far: (decoded, props), as received."""
        def of_ns(d):
            results = d["results"] if d.get("message_type") == "step_results" else [d]
            return any(r.get("namespace") == ns for r in results)
        return [(d, p) for d, p, _ in self.orch.received.get(f"{self.orch.prefix}.results", []) if isinstance(d, dict) and of_ns(d)]

    def assert_valid_result(self, r, ns):
        self.assertEqual((r["protocol_version"], r["message_type"], r["namespace"], r["task_id"]), (1, "step_result", ns, "tsk_1"))
        self.assertIsInstance(r["attempt"], int)
        self.assertIn(r["status"], ("success", "failure", "waiting"))
        for key in ("step_id", "step_name", "started_at", "finished_at", "worker_id"):
            self.assertIsInstance(r[key], str)

    def test_results_ready_together_go_in_step_results_messages_and_every_step_is_acked(self):
        ns, w, t = self.start_worker(concurrency=10)
        ids = [f"stp_b{i}" for i in range(40)]
        for i, step_id in enumerate(ids):
            self.orch.dispatch(step_message(namespace=ns, step_id=step_id, idempotency_key=f"{step_id}:1", input={"refund_amount": i + 1}))
        for i, step_id in enumerate(ids):
            r = self.orch.result_for(step_id)[0]
            self.assertEqual((r["status"], r["result"]["amount"]), ("success", i + 1))
        with self.assertRaises(AssertionError):  # each answered once: nothing more comes
            self.orch.wait(f"{self.orch.prefix}.results", lambda d, p, b: d and d.get("namespace") == ns, timeout=0.5)
        messages = self.result_messages(ns)
        carried = []
        batches = 0
        user = pika.URLParameters(AMQP_URL).credentials.username
        for d, props in messages:
            if props.type == "step_result":
                self.assertEqual(props.message_id, f"{d['step_id']}:{d['attempt']}")
                self.assertEqual(props.correlation_id, "corr_1")
                results = [d]
            else:
                self.assertEqual(props.type, "step_results")
                self.assertEqual(sorted(d), ["message_type", "protocol_version", "results"])
                self.assertEqual((d["protocol_version"], d["message_type"]), (1, "step_results"))
                results = d["results"]
                self.assertTrue(2 <= len(results) <= 500)
                self.assertEqual(props.message_id, f"{results[0]['step_id']}:{results[0]['attempt']}+{len(results) - 1}")
                self.assertIsNone(props.correlation_id)
                batches += 1
            self.assertEqual((props.content_type, props.delivery_mode, props.user_id), ("application/json", 2, user))
            for r in results:
                self.assert_valid_result(r, ns)
            carried += [r["step_id"] for r in results]
        self.assertEqual(sorted(carried), sorted(ids))  # every result exactly once
        self.assertLess(len(messages), len(ids))
        self.assertGreaterEqual(batches, 1)
        w.stop()
        t.join(15)
        self.assertEqual(self.orch.depth(ns), 0)  # all acked

    def test_a_lone_result_goes_alone_as_a_plain_step_result(self):
        ns, w, t = self.start_worker(concurrency=10)
        m = step_message(namespace=ns, step_id="stp_lone", idempotency_key="stp_lone:1", attempt=2)
        self.orch.dispatch(m)
        r, props, body = self.orch.result_for("stp_lone")
        self.assertEqual((props.type, props.message_id, props.correlation_id), ("step_result", "stp_lone:2", "corr_1"))
        self.assertEqual(json.loads(body), r)  # the result itself, no envelope
        self.assert_valid_result(r, ns)
        self.assertEqual([p.type for _, p in self.result_messages(ns)], ["step_result"])
        w.stop()
        t.join(15)
        self.assertEqual(self.orch.depth(ns), 0)

    def test_a_step_results_message_not_confirmed_gives_back_every_step_it_carried(self):
        ns, w, t = self.start_worker(concurrency=20)
        accept_results = self.refuse_results(ns)
        ids = [f"stp_x{i}" for i in range(20)]
        for step_id in ids:
            self.orch.dispatch(step_message(namespace=ns, step_id=step_id))
        first = [self.orch.result_for(step_id)[0] for step_id in ids]
        accept_results()
        self.assertEqual({r["delivery_count"] for r in first}, {1})
        batched = {r["step_id"] for d, p in self.result_messages(ns) if p.type == "step_results" for r in d["results"]}
        self.assertTrue(batched)  # some results went, and were refused, together
        again = [self.orch.wait(f"{self.orch.prefix}.results", lambda d, p, b, s=step_id: d and d.get("step_id") == s and d["delivery_count"] >= 2, timeout=15)[0] for step_id in ids]
        self.assertEqual({r["status"] for r in again}, {"success"})  # every step came back
        w.stop()
        t.join(15)
        self.assertEqual(self.orch.depth(ns), 0)

    def test_at_shutdown_a_steps_message_with_a_step_still_running_goes_back_whole(self):
        ns, w, t = self.start_worker(shutdown_grace=0.3)
        steps = [
            step_message(namespace=ns, step_id="stp_g1"),
            step_message(namespace=ns, step_id="stp_g2", input={"ms": 3000}, handler={"callable": "slow", "method": None, "initialization": {}}),
        ]
        self.orch.dispatch_steps(ns, steps_message(steps))
        self.assertEqual(self.orch.result_for("stp_g1")[0]["status"], "success")
        w.stop()
        t.join(15)
        self.assertFalse(t.is_alive())
        self.assertEqual(self.orch.depth(ns), 1)  # given back, answered sibling and all

    def test_the_steps_of_a_steps_message_run_at_most_concurrency_at_once(self):
        ns, _, _ = self.start_worker(concurrency=2)
        COUNTING.update(running=0, max=0)
        steps = [step_message(namespace=ns, step_id=f"stp_n{i}", handler={"callable": "counting", "method": None, "initialization": {}}) for i in range(5)]
        self.orch.dispatch_steps(ns, steps_message(steps))
        for i in range(5):
            self.assertEqual(self.orch.result_for(f"stp_n{i}")[0]["status"], "success")
        self.assertEqual(COUNTING["max"], 2)

    def eventually(self, predicate, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                self.fail(f"waited {timeout} s for {what}")
            time.sleep(0.02)

    def held_worker(self):
        """A worker of concurrency 4 whose ``held`` handler waits until ``release`` is set, and
        ``dispatch(name, count, **over)``, which sends ``count`` messages of 16 steps and returns
        their step ids."""
        release = threading.Event()

        def held(ctx):
            release.wait(20)
            return {"held": True}

        ns, w, t = self.start_worker(handlers={**HANDLERS, "held": held}, concurrency=4)
        self.addCleanup(release.set)  # added after the worker's cleanup, so run before it

        def dispatch(name, count, **over):
            ids = []
            for i in range(count):
                steps = [step_message(namespace=ns, step_id=f"stp_{name}{i}_{j}", idempotency_key=f"stp_{name}{i}_{j}:1", **over) for j in range(16)]
                self.orch.dispatch_steps(ns, steps_message(steps), message_id=f"stp_{name}{i}_0:1+15")
                ids += [m["step_id"] for m in steps]
            return ids

        return ns, w, t, release, dispatch

    def declared(self, ns):
        """The step queue's ready messages and consumers (passive declare)."""
        return self.orch.ch.queue_declare(f"{self.orch.prefix}.steps.{ns}", passive=True).method

    def narrow_to_two(self, w, dispatch):
        """Four messages of 16 steps, answered: 4 slots soon ask for ceil(2 × 4 / 16) + 1 = 2 messages at a time."""
        warm = dispatch("w", 4)
        for step_id in warm:
            self.assertEqual(self.orch.result_for(step_id)[0]["status"], "success")
        self.eventually(lambda: w.prefetch == 2, "the prefetch to narrow to 2")
        return warm

    def three_left_while_held(self, ns, dispatch):
        """With the handlers blocked, five more messages: the worker takes two (32 steps, 4
        running) and leaves three in the queue, where a prefetch of 4 would leave one."""
        blocked = dispatch("h", 5, handler={"callable": "held", "method": None, "initialization": {}})
        self.eventually(lambda: self.orch.depth(ns) == 3, "three messages left in the queue")
        time.sleep(0.3)
        m = self.declared(ns)
        self.assertEqual((m.message_count, m.consumer_count), (3, 1))  # one consumer: the old subscription is cancelled
        return blocked

    def release_and_check_every_step_answered_once(self, ns, w, t, release, warm, blocked):
        release.set()
        for step_id in blocked:
            r = self.orch.result_for(step_id, timeout=15)[0]
            self.assertEqual((r["status"], r["result"], r["delivery_count"]), ("success", {"held": True}, 1))
        with self.assertRaises(AssertionError):  # nothing more comes
            self.orch.wait(f"{self.orch.prefix}.results", lambda d, p, b: d and d.get("namespace") == ns, timeout=0.5)
        carried = [r["step_id"] for d, _ in self.result_messages(ns) for r in (d["results"] if d.get("message_type") == "step_results" else [d])]
        self.assertEqual(sorted(carried), sorted(warm + blocked))  # every step answered exactly once
        self.assertEqual(self.orch.depth(ns), 0)
        self.assertEqual(w.prefetch, 2)
        w.stop()
        t.join(15)
        self.assertFalse(t.is_alive())
        self.assertEqual(self.orch.depth(ns), 0)  # every message acked: none came back when the connection closed

    def test_given_steps_messages_the_worker_holds_fewer_of_them_and_leaves_the_rest_in_the_queue(self):
        ns, w, t, release, dispatch = self.held_worker()
        self.assertEqual(w.prefetch, 4)
        warm = self.narrow_to_two(w, dispatch)
        blocked = self.three_left_while_held(ns, dispatch)
        self.release_and_check_every_step_answered_once(ns, w, t, release, warm, blocked)

    def worker_connections(self, ns, w):
        """The broker's pids of the worker's connections, found by their client-provided name."""
        name = f"tasker-worker {ns} {w.worker_id}"
        return [line.split("\t")[0] for line in rabbitmqctl("list_connections", "pid", "client_properties").splitlines() if name in line]

    @unittest.skipUnless(has_rabbitmqctl(), "needs rabbitmqctl on the broker's host to drop a connection")
    def test_after_the_broker_drops_the_connection_the_new_session_keeps_the_narrowed_prefetch(self):
        ns, w, t, release, dispatch = self.held_worker()
        warm = self.narrow_to_two(w, dispatch)

        # The broker drops the worker's connection; the worker connects again and consumes in a
        # new session (one consumer on the queue again, the old one gone with its connection).
        before = self.worker_connections(ns, w)
        self.assertEqual(len(before), 1, f"the worker's connection in rabbitmqctl list_connections: {before}")
        session = w._session
        rabbitmqctl("close_connection", before[0], "test drops the connection")
        self.eventually(lambda: w._session > session and self.declared(ns).consumer_count == 1, "the worker to consume again in a new session", timeout=15)
        after = self.worker_connections(ns, w)
        self.assertEqual(len(after), 1)
        self.assertNotEqual(after, before)  # a new connection, not the old one still open
        self.assertEqual(w.prefetch, 2)

        # The new session asked the broker for the narrowed prefetch (a session back at the
        # concurrency would leave one message, not three).
        blocked = self.three_left_while_held(ns, dispatch)
        # No warm-up message came back with the dropped connection: each step answered once.
        self.release_and_check_every_step_answered_once(ns, w, t, release, warm, blocked)

    def test_a_cancel_broadcast_reaches_a_running_step_of_a_steps_message(self):
        ns, _, _ = self.start_worker()
        CANCELLABLE_STARTED.clear()
        self.addCleanup(CANCELLABLE_STARTED.clear)  # the other cancel test waits for it to be set again
        steps = [
            step_message(namespace=ns, step_id="stp_sok", task_id="tsk_other"),
            step_message(namespace=ns, step_id="stp_scxl", task_id="tsk_scxl", handler={"callable": "until_cancelled", "method": None, "initialization": {}}),
        ]
        self.orch.dispatch_steps(ns, steps_message(steps))
        self.assertTrue(CANCELLABLE_STARTED.wait(5))
        self.assertEqual(self.orch.result_for("stp_sok")[0]["status"], "success")
        cancel = {"protocol_version": 1, "message_type": "cancel", "task_ids": ["tsk_scxl"], "reason": "operator"}
        self.orch.ch.basic_publish(f"{self.orch.prefix}.control", "", json.dumps(cancel).encode())
        self.assertEqual(self.orch.result_for("stp_scxl", timeout=5)[0]["result"], {"cancelled": True})

    def test_a_handler_creates_a_task_with_a_task_request_and_direct_reply_to(self):
        ns, _, _ = self.start_worker()
        self.orch.dispatch(step_message(namespace=ns, step_id="stp_del", handler={"callable": "delegate", "method": None, "initialization": {}}))
        r = self.orch.result_for("stp_del")[0]
        self.assertEqual(r["result"], {"payment_task_id": "tsk_child"})
        req = next(x for x in self.orch.requests if x["parent"]["step_id"] == "stp_del")
        self.assertEqual(req["idempotency_key"], "stp_del:payments.process_refund:1")
        self.assertEqual(req["correlation_id"], "corr_1")

    def test_a_handler_waits_for_the_task_it_created(self):
        ns, _, _ = self.start_worker()
        self.orch.dispatch(step_message(namespace=ns, step_id="stp_wait", handler={"callable": "delegate_and_wait", "method": None, "initialization": {}}))
        r = self.orch.result_for("stp_wait")[0]
        self.assertEqual((r["status"], r["wait_for"]), ("waiting", {"task_id": "tsk_child"}))

    def test_a_cancel_broadcast_reaches_the_running_handler_of_that_task(self):
        ns, _, _ = self.start_worker()
        self.orch.dispatch(step_message(namespace=ns, step_id="stp_cxl", task_id="tsk_cxl", handler={"callable": "until_cancelled", "method": None, "initialization": {}}))
        self.assertTrue(CANCELLABLE_STARTED.wait(5))
        cancel = {"protocol_version": 1, "message_type": "cancel", "task_ids": ["tsk_cxl"], "reason": "operator"}
        self.orch.ch.basic_publish(f"{self.orch.prefix}.control", "", json.dumps(cancel).encode())
        self.assertEqual(self.orch.result_for("stp_cxl", timeout=5)[0]["result"], {"cancelled": True})

    def test_stop_lets_the_running_step_finish_and_answer_before_returning(self):
        ns, w, t = self.start_worker()
        self.orch.dispatch(step_message(namespace=ns, step_id="stp_stop", input={"ms": 500}, handler={"callable": "slow", "method": None, "initialization": {}}))
        deadline = time.monotonic() + 5
        while self.orch.depth(ns) > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        w.stop()
        t.join(15)
        self.assertFalse(t.is_alive())
        self.assertEqual(self.orch.result_for("stp_stop", timeout=1)[0]["status"], "success")
        self.assertEqual(self.orch.depth(ns), 0)


if __name__ == "__main__":
    unittest.main()
