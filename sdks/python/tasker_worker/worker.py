"""The worker runtime on pika: consume the namespace's step queue, run each step's handler on
a thread, publish its result with publisher confirms and ack the step only then (a ``steps``
message, several steps in one, once every one of its steps is answered)."""
from __future__ import annotations

import collections
import json
import logging
import os
import random
import signal
import socket
import string
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import pika
import pika.exceptions

from .context import StepContext, WaitFor
from .errors import to_step_error
from .messages import (
    DEFAULT_AMQP_URL,
    DEFAULT_PREFIX,
    HANDLER_NOT_FOUND,
    HANDLER_TIMEOUT,
    INTERNAL,
    INVALID_MESSAGE,
    MAX_MESSAGE_BYTES,
    NAMESPACE_PATTERN,
    Names,
    Refused,
    StepPart,
    decode_step_messages,
    dumps,
    encode_result,
    now_iso,
    parked_routing_key,
    step_result,
)
from .prefetch import PrefetchTuner

log = logging.getLogger("tasker_worker")

#: A handler: a plain function of the step context; its return value (JSON) is the result.
Handler = Callable[[StepContext], Any]

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
#: Header values are kept short: a schema error can list many fields.
MAX_REASON_CHARS = 4096
#: How often run() checks for the namespace's queue, and between reconnects.
POLL_SECONDS = 1.0
#: Pause before giving back a message whose result (or parking) could not be published.
PUBLISH_FAILURE_BACKOFF = 1.0
#: Results in one ``step_results`` message at most (docs/protocol.md, section 4).
MAX_RESULTS_PER_MESSAGE = 500
#: A ``step_results`` message stays under half the message limit (each result is at most 1 MiB).
MAX_BATCH_BYTES = MAX_MESSAGE_BYTES // 2


@dataclass
class _Delivery:
    """One delivery, from decoding to its ack: one step, or several (a ``steps`` message)."""

    tag: int
    session: int
    props: Any
    body: bytes
    delivery_count: int
    #: Its steps not answered yet (result confirmed, or parked); acked when none is left.
    pending: int = 1
    #: Its steps being run, for cancellations and shutdown.
    jobs: list = field(default_factory=list)
    #: A result or a parking was not confirmed: it goes back to the queue after a pause.
    failed: bool = False
    #: A step was not started before the worker stopped: it goes back to the queue.
    given_back: bool = False
    #: Given back at shutdown, or its connection is gone: nothing more is acked for it.
    handed_back: bool = False


@dataclass
class _Job:
    """One step being run."""

    delivery: _Delivery
    session: int
    message: dict
    ctx: Optional[StepContext]
    started_at: str
    delivery_count: int
    cancel: threading.Event = field(default_factory=threading.Event)
    answered: bool = False
    holds_slot: bool = False
    returned: bool = False
    timer: Any = None


class Worker:
    """The worker of one namespace.

    >>> worker = Worker(namespace="payments", handlers={"team_scaling_payments_validate_eligibility": validate})
    >>> worker.run()   # until SIGTERM/SIGINT: then running steps finish (grace period) and it returns

    Settings not given come from the environment: ``TASKER_NAMESPACE``, ``TASKER_AMQP_URL``
    (default amqp://guest:guest@127.0.0.1:5672), ``TASKER_AMQP_PREFIX`` (default ``tasker``).
    ``concurrency`` (default 10) bounds the handlers running at once and is the consumer's
    prefetch while messages carry one step each (fewer messages when they carry several:
    ``prefetch``); ``shutdown_grace`` (seconds, default 10) is how long running steps may finish at
    stop before they are given back to the queue; ``overrun_grace`` (seconds, default 5) how
    long a handler that outlives its step's timeout keeps its slot.
    """

    def __init__(
        self,
        namespace: Optional[str] = None,
        handlers: Optional[Dict[str, Handler]] = None,
        *,
        concurrency: int = 10,
        amqp_url: Optional[str] = None,
        prefix: Optional[str] = None,
        shutdown_grace: float = 10.0,
        overrun_grace: float = 5.0,
        worker_id: Optional[str] = None,
    ) -> None:
        env = os.environ
        self.namespace = namespace or env.get("TASKER_NAMESPACE", "")
        problems = []
        if not NAMESPACE_PATTERN.match(self.namespace):
            problems.append(f"namespace {self.namespace!r} must be lower snake case (a-z, 0-9, _), starting with a letter (or set TASKER_NAMESPACE)")
        if not isinstance(concurrency, int) or not 1 <= concurrency <= 65535:
            problems.append(f"concurrency {concurrency!r} must be an integer from 1 to 65535")
        self.handlers: Dict[str, Handler] = dict(handlers or {})
        for name, fn in self.handlers.items():
            if not callable(fn):
                problems.append(f"handler {name!r} is not callable")
        try:
            self.names = Names(prefix or env.get("TASKER_AMQP_PREFIX") or DEFAULT_PREFIX)
        except ValueError as e:
            problems.append(str(e))
        if problems:
            raise ValueError("invalid worker options: " + "; ".join(problems))
        self.concurrency = concurrency
        self.amqp_url = amqp_url or env.get("TASKER_AMQP_URL") or DEFAULT_AMQP_URL
        self.shutdown_grace = shutdown_grace
        self.overrun_grace = overrun_grace
        suffix = "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(6))
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{suffix}"
        self.queue = self.names.step_queue(self.namespace)
        self._stop = threading.Event()
        self._session = 0
        self._deliveries: Dict[int, _Delivery] = {}
        self._waiting: collections.deque = collections.deque()
        self._slots_in_use = 0
        #: Results waiting to be published: (job, outcome, serialized result).
        self._results: list = []
        #: A results message waits for its confirm, or the next one is about to go.
        self._results_busy = False
        self._replies: Dict[str, list] = {}
        self._replies_lock = threading.Lock()
        self._conn: Optional[pika.BlockingConnection] = None
        self._prefetch_tuner = PrefetchTuner(concurrency)
        #: The step queue subscriptions of this session not cancelled yet; the last is the
        #: current one (the others are being replaced by it).
        self._consumer_tags: list = []
        #: A change of prefetch asked for by the tuner, not made yet.
        self._prefetch_wanted: Optional[int] = None

    @property
    def prefetch(self) -> int:
        """Step messages the broker may send before this worker acks one: its concurrency, or
        fewer when messages carry several steps each (see prefetch.py)."""
        return self._prefetch_tuner.current

    def handler(self, name: Optional[str] = None) -> Callable[[Handler], Handler]:
        """Registers a function as the handler of a callable (default: its own name)."""

        def register(fn: Handler) -> Handler:
            self.handlers[name or fn.__name__] = fn
            return fn

        return register

    # ── lifecycle ────────────────────────────────────────────────────────────────────

    def stop(self) -> None:
        """Asks run() to stop: no new steps; running ones get the grace period. Thread-safe."""
        self._stop.set()

    def run(self, install_signal_handlers: bool = True) -> None:
        """Connects (again after a lost connection), waits for the namespace's queue, consumes
        it until stop() or SIGTERM/SIGINT, then shuts down gracefully and returns."""
        if not self.handlers:
            raise ValueError("invalid worker options: needs at least one handler")
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            self._install_signal_handlers()
        log.info("worker starting: namespace=%s queue=%s concurrency=%d handlers=%s", self.namespace, self.queue, self.concurrency, sorted(self.handlers))
        backoff = POLL_SECONDS
        while not self._stop.is_set():
            try:
                self._run_session()
                backoff = POLL_SECONDS
            except (pika.exceptions.AMQPError, OSError) as e:
                if self._stop.is_set():
                    break
                log.error("connection to RabbitMQ lost or refused (%s: %s); reconnecting in %.1f s", type(e).__name__, e, backoff)
                self._forget_session()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        log.info("worker stopped")

    def _install_signal_handlers(self) -> None:
        def on_signal(signum: int, _frame: Any) -> None:
            if self._stop.is_set():
                log.warning("second signal while stopping: exiting now")
                os._exit(1)
            log.info("signal %s received: stopping the worker", signal.Signals(signum).name)
            self._stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def _forget_session(self) -> None:
        # The broker gives back whatever the lost channel held: nothing of it may be acked now.
        for delivery in self._deliveries.values():
            delivery.handed_back = True
            for job in delivery.jobs:
                job.cancel.set()
        self._deliveries.clear()
        self._waiting.clear()
        self._slots_in_use = 0
        self._results = []
        self._results_busy = False
        self._consumer_tags = []
        self._drop_prefetch_change()
        self._conn = None

    def _run_session(self) -> None:
        params = pika.URLParameters(self.amqp_url)
        params.client_properties = {"connection_name": f"tasker-worker {self.namespace} {self.worker_id}"}
        conn = pika.BlockingConnection(params)
        # Results carry user_id: RabbitMQ checks it is this connection's user, so the
        # orchestrator can check a namespace's results come from that namespace's user.
        self._user = params.credentials.username
        self._conn = conn
        self._session += 1
        try:
            if not self._wait_for_queue(conn):
                return
            self._consume = conn.channel()
            # A new session starts from the prefetch the tuner holds (the steps per message
            # seen so far), not from the concurrency again.
            self._consumer_tags = []
            self._consume.basic_qos(prefetch_count=self._prefetch_tuner.current)
            self._publish = conn.channel()
            self._publish.confirm_delivery()
            self._requests = conn.channel()
            self._requests.confirm_delivery()
            self._requests.basic_consume(DIRECT_REPLY_TO, self._on_reply, auto_ack=True)
            self._listen_for_cancellations(conn)
            self._consumer_tags.append(self._consume.basic_consume(self.queue, self._on_delivery, auto_ack=False))
            log.info("worker consuming %s", self.queue)
            while not self._stop.is_set():
                conn.process_data_events(time_limit=0.2)
                if self._prefetch_wanted is not None and not self._stop.is_set():
                    self._change_prefetch()
            self._shutdown(conn)
        finally:
            if conn.is_open:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - closing a broken connection
                    pass

    def _listen_for_cancellations(self, conn: pika.BlockingConnection) -> None:
        """Cancellations reach every worker on the control fanout exchange, through a queue of
        this worker's own: running handlers of a cancelled task see ``ctx.cancelled``."""
        ch = conn.channel()
        try:
            q = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
            ch.queue_bind(q, self.names.control_exchange, "")
        except pika.exceptions.ChannelClosedByBroker as e:
            log.warning("no control exchange %s (%s): cancellations will not reach running handlers", self.names.control_exchange, e)
            return
        ch.basic_consume(q, self._on_control, auto_ack=True)

    def _on_control(self, _ch: Any, _method: Any, _props: Any, body: bytes) -> None:
        try:
            message = json.loads(body.decode("utf-8"))
            ids = set(message["task_ids"]) if message.get("message_type") == "cancel" else set()
        except (ValueError, KeyError, TypeError):
            log.warning("control message ignored: not a cancel message")
            return
        for delivery in self._deliveries.values():
            for job in delivery.jobs:
                if job.message["task_id"] in ids and not job.cancel.is_set():
                    log.info("task %s cancelled (%s): its running step is told so", job.message["task_id"], message.get("reason"))
                    job.cancel.set()

    def _wait_for_queue(self, conn: pika.BlockingConnection) -> bool:
        waited = 0.0
        while not self._stop.is_set():
            ch = conn.channel()
            try:
                ch.queue_declare(self.queue, passive=True)
                ch.close()
                return True
            except pika.exceptions.ChannelClosedByBroker:
                if waited % 5 < POLL_SECONDS:
                    log.info("waiting for %s: the orchestrator declares it when a template of this namespace is registered", self.queue)
            conn.process_data_events(time_limit=0)
            conn.sleep(POLL_SECONDS)
            waited += POLL_SECONDS
        return False

    def _shutdown(self, conn: pika.BlockingConnection) -> None:
        log.info("worker stopping: %d step message(s) in hand", len(self._deliveries))
        self._drop_prefetch_change()
        # The current subscription, and any older one a failed change left behind.
        while self._consumer_tags:
            self._consume.basic_cancel(self._consumer_tags.pop())
        for job in list(self._waiting):  # not started: its message goes back once its running siblings end
            self._waiting.remove(job)
            self._step_ended(job.delivery, "given_back")
        deadline = time.monotonic() + self.shutdown_grace
        while self._deliveries and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.05)
        if self._deliveries:
            log.warning("shutdown grace period over: %d step message(s) with steps still running given back to the queue", len(self._deliveries))
            for delivery in list(self._deliveries.values()):
                delivery.handed_back = True
                for job in delivery.jobs:
                    job.cancel.set()
                self._consume.basic_nack(delivery.tag, requeue=True)
            self._deliveries.clear()
        conn.close()

    # ── deliveries ───────────────────────────────────────────────────────────────────

    def _on_delivery(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        if self._stop.is_set():
            ch.basic_nack(method.delivery_tag, requeue=True)
            return
        headers = props.headers or {}
        # Quorum queues count earlier deliveries in x-delivery-count; classic ones only flag a redelivery.
        previous = headers.get("x-delivery-count", 1 if method.redelivered else 0)
        try:
            delivery_count = int(previous) + 1
        except (TypeError, ValueError):
            delivery_count = 1
        delivery = _Delivery(tag=method.delivery_tag, session=self._session, props=props, body=body, delivery_count=delivery_count)
        self._deliveries[delivery.tag] = delivery
        try:
            # One step, or several in a ``steps`` message: each is run (or parked) on its own.
            parts = decode_step_messages(body)
        except Refused as r:
            self._tune_prefetch(1)
            self._park(delivery, r)  # the whole message, body unchanged
            return
        self._tune_prefetch(len(parts))
        delivery.pending = len(parts)
        for part in parts:
            self._take(delivery, part)

    def _tune_prefetch(self, steps: int) -> None:
        """Counts a delivery of ``steps`` steps; a change of prefetch it calls for is made by
        the consuming loop once the deliveries at hand are dispatched (_change_prefetch)."""
        want = self._prefetch_tuner.observe(steps)
        if want is not None:
            self._prefetch_wanted = want

    def _change_prefetch(self) -> None:
        """Follows the steps per message received with the consumer's prefetch. Runs on the
        connection's thread, in the consuming loop, between two process_data_events.

        RabbitMQ applies a prefetch (basic.qos, global false) only to consumers created after
        it: so set it, subscribe again on the same channel, then cancel the old subscription.
        What the old one delivered stays unacked on the channel and is acked (by delivery tag)
        as usual; only new deliveries count against the new prefetch. pika gives back to the
        queue (basic.reject, requeue) what reaches the old subscription and is not dispatched
        yet when it is cancelled: this runs outside of the delivery callbacks, once the
        deliveries already received are dispatched, so that is only what the broker sent
        while the change was under way."""
        want, self._prefetch_wanted = self._prefetch_wanted, None
        if want is None:
            return
        before = self._prefetch_tuner.current
        changed = False
        try:
            self._consume.basic_qos(prefetch_count=want)
            self._consumer_tags.append(self._consume.basic_consume(self.queue, self._on_delivery, auto_ack=False))
            while len(self._consumer_tags) > 1:
                self._consume.basic_cancel(self._consumer_tags[0])
                del self._consumer_tags[0]
            changed = True
            log.debug("prefetch of %s follows the steps per message: %d -> %d", self.queue, before, want)
        except pika.exceptions.AMQPError as e:
            # The channel or the connection is closed: the session ends (a new one starts from
            # the prefetch held), or a later message asks again.
            log.info("prefetch of %s not changed from %d to %d (%s: %s)", self.queue, before, want, type(e).__name__, e)
        finally:
            self._prefetch_tuner.settled(want if changed else None)

    def _drop_prefetch_change(self) -> None:
        """Stopping, or the connection is gone: a change asked for is not made (a new session
        starts from the prefetch held)."""
        if self._prefetch_wanted is not None:
            self._prefetch_wanted = None
            self._prefetch_tuner.settled(None)

    def _take(self, delivery: _Delivery, part: StepPart) -> None:
        """Starts one step of a delivery (or queues it for a slot), or parks it."""
        refused = part.refused
        message = part.message
        if refused is None and message["namespace"] != self.namespace:  # type: ignore[index]
            refused = Refused(
                INVALID_MESSAGE,
                f"{part.what} is for namespace '{message['namespace']}' but came from {self.queue}, the queue of '{self.namespace}'",  # type: ignore[index]
            )
        if refused is not None:
            # A step of a ``steps`` message is parked alone, as its own JSON; a lone one, body untouched.
            self._park(delivery, refused, part if part.in_steps else None)
            return
        assert message is not None
        job = _Job(delivery=delivery, session=delivery.session, message=message, ctx=None, started_at=now_iso(), delivery_count=delivery.delivery_count)
        delivery.jobs.append(job)
        callable_name = message["handler"]["callable"]
        if callable_name not in self.handlers:
            available = ", ".join(sorted(self.handlers)) or "(none)"
            text = (
                f"no handler for callable '{callable_name}' (step {message['step_name']}) in namespace '{message['namespace']}'; "
                f"this worker has: {available}"
            )
            log.error(text)
            self._answer(job, {"status": "failure", "error": {"kind": "permanent", "code": HANDLER_NOT_FOUND, "message": text}})
            return
        if self._slots_in_use >= self.concurrency:
            if part.in_steps:
                log.debug("step %s waits for a free slot", message["step_name"])  # steps beyond the concurrency wait
            else:
                log.warning("step %s waits for a slot held by a handler that outlived its deadline", message["step_name"])
            self._waiting.append(job)
            return
        self._start(job)

    def _start(self, job: _Job) -> None:
        m = job.message
        job.started_at = now_iso()
        job.ctx = StepContext(m, cancel_event=job.cancel, request_task=self._request_task, delivery_count=job.delivery_count)
        job.holds_slot = True
        self._slots_in_use += 1
        timeout_ms = m.get("timeout_ms")
        if timeout_ms:
            job.timer = self._conn.call_later(timeout_ms / 1000.0, lambda: self._on_timeout(job))  # type: ignore[union-attr]
        threading.Thread(target=self._run_handler, args=(job,), name=f"step-{m['step_name']}", daemon=True).start()

    def _run_handler(self, job: _Job) -> None:
        fn = self.handlers[job.message["handler"]["callable"]]
        try:
            value = fn(job.ctx)  # type: ignore[arg-type]
            if isinstance(value, WaitFor):
                outcome = {"status": "waiting", "wait_for": {"task_id": value.task_id}}
            else:
                outcome, failure = encode_result(value)
                if failure:
                    outcome = {"status": "failure", "error": failure}
        except BaseException as e:  # noqa: BLE001 - whatever a handler raises is its step's outcome
            error, notes = to_step_error(e)
            if notes:
                log.warning("handler error adjusted to fit a step result: %s", "; ".join(notes))
            level = logging.WARNING
            log.log(level, "step %s failed (%s %s): %s", job.message["step_name"], error["kind"], error["code"], error["message"], exc_info=error["code"] == "HANDLER_ERROR")
            outcome = {"status": "failure", "error": error}
        self._threadsafe(job, lambda: self._on_returned(job, outcome))

    def _threadsafe(self, job: _Job, fn: Callable[[], None]) -> None:
        conn = self._conn
        if conn is None or job.session != self._session:
            return  # that connection is gone: the broker redelivers the step
        try:
            conn.add_callback_threadsafe(fn)
        except Exception:  # noqa: BLE001 - connection closed meanwhile
            pass

    def _on_returned(self, job: _Job, outcome: dict) -> None:
        job.returned = True
        self._release(job)
        if job.answered:
            log.warning("timed-out handler of step %s returned; its result is ignored", job.message["step_name"])
            return
        self._answer(job, outcome)

    def _on_timeout(self, job: _Job) -> None:
        if job.answered or job.delivery.handed_back:
            return
        m = job.message
        text = f"handler for step {m['step_name']} did not finish within its timeout of {m['timeout_ms']} ms"
        job.cancel.set()
        log.warning("step timed out: result sent now; the handler keeps running until it returns (%s)", text)
        self._answer(job, {"status": "failure", "error": {"kind": "retryable", "code": HANDLER_TIMEOUT, "message": text}})
        # The slot comes free when the handler returns, or after the overrun grace period.
        self._conn.call_later(self.overrun_grace, lambda: self._release(job))  # type: ignore[union-attr]

    def _release(self, job: _Job) -> None:
        if not job.holds_slot or job.session != self._session:
            return
        job.holds_slot = False
        self._slots_in_use -= 1
        if not job.returned:
            log.warning("handler of step %s still running after its deadline and the grace period: its slot is freed", job.message["step_name"])
        while self._waiting and self._slots_in_use < self.concurrency and not self._stop.is_set():
            self._start(self._waiting.popleft())

    def _answer(self, job: _Job, outcome: dict) -> None:
        """Queues the result for publishing; the step is settled when its message is confirmed.
        Runs on the connection's thread."""
        if job.answered or job.delivery.handed_back or job.session != self._session:
            return
        job.answered = True
        if job.timer is not None:
            self._conn.remove_timeout(job.timer)  # type: ignore[union-attr]
        m = job.message
        result = step_result(m, started_at=job.started_at, worker_id=self.worker_id, delivery_count=job.delivery_count, outcome=outcome)
        self._results.append((job, outcome, dumps(result)))
        if not self._results_busy:
            self._publish_results()

    def _publish_results(self) -> None:
        """Publishes the waiting results: one alone as a plain ``step_result``, several as one
        ``step_results`` message (docs/protocol.md, section 4), and settles their steps once
        it is confirmed. Results that become ready meanwhile are held: their callbacks run
        after this one, then the next message takes them all."""
        if not self._results:
            self._results_busy = False
            return
        batch = self._take_results()
        self._results_busy = True
        confirmed = self._send_results(batch)
        # The next message goes once the callbacks already waiting (results that became ready
        # during the confirm) have added their results.
        self._conn.call_later(0, self._publish_results)  # type: ignore[union-attr]
        if not confirmed:
            paused = False
            for job, _, _ in batch:
                paused = self._step_ended(job.delivery, "failed", pause=not paused) or paused
            return
        for job, outcome, _ in batch:
            m = job.message
            if outcome["status"] == "success":
                log.info("step %s succeeded (task %s, attempt %d)", m["step_name"], m["task_id"], m["attempt"])
            self._step_ended(job.delivery)

    def _take_results(self) -> list:
        """The next message's results: as many as fit, at least one."""
        size = 0
        n = 0
        while n < len(self._results) and n < MAX_RESULTS_PER_MESSAGE:
            size += len(self._results[n][2]) + 1
            if n > 0 and size > MAX_BATCH_BYTES:
                break
            n += 1
        batch = self._results[:n]
        del self._results[:n]
        return batch

    def _send_results(self, batch: list) -> bool:
        """Publishes one message carrying the batch's results: True once the broker confirmed it."""
        first = batch[0][0].message
        if len(batch) == 1:
            body = batch[0][2]
            message_id = f"{first['step_id']}:{first['attempt']}"
            correlation_id = first.get("correlation_id") or None
            kind = "step_result"
        else:
            # The results are already serialized: the envelope is written around them.
            body = b'{"protocol_version":1,"message_type":"step_results","results":[' + b",".join(r for _, _, r in batch) + b"]}"
            message_id = f"{first['step_id']}:{first['attempt']}+{len(batch) - 1}"
            correlation_id = None
            kind = "step_results"
        try:
            self._publish.basic_publish(
                self.names.results_exchange,
                first["namespace"],
                body,
                pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=2,
                    message_id=message_id,
                    correlation_id=correlation_id,
                    type=kind,
                    user_id=self._user,
                ),
            )
        except pika.exceptions.NackError as e:
            what = "step result" if len(batch) == 1 else f"step_results message ({len(batch)} results)"
            log.error("%s not confirmed by the broker (%s); the step message(s) go back to the queue", what, e)
            return False
        return True

    def _step_ended(self, delivery: _Delivery, end: str = "answered", pause: bool = True) -> bool:
        """Counts one step of the delivery as ended: ``answered`` (result confirmed, or parked),
        ``failed`` (not confirmed) or ``given_back`` (not started at shutdown). Once every step
        has ended: acks the delivery, or gives it back whole (after a pause if something was not
        confirmed: its answered siblings are answered again, which changes nothing). Returns
        whether it paused (``pause=False``: the caller already did, for a whole results message)."""
        if end == "failed":
            delivery.failed = True
        elif end == "given_back":
            delivery.given_back = True
        delivery.pending -= 1
        if delivery.pending > 0 or delivery.handed_back or delivery.session != self._session:
            return False
        self._deliveries.pop(delivery.tag, None)
        if delivery.failed:
            # A lasting fault should not spin: pause before the message goes back.
            if pause:
                self._conn.sleep(PUBLISH_FAILURE_BACKOFF)  # type: ignore[union-attr]
            self._consume.basic_nack(delivery.tag, requeue=True)
            return pause
        elif delivery.given_back:
            self._consume.basic_nack(delivery.tag, requeue=True)
        else:
            # Acked only now: a result that was never confirmed must not lose its step.
            self._consume.basic_ack(delivery.tag)
        return False

    def _park(self, delivery: _Delivery, reason: Refused, part: Optional[StepPart] = None) -> None:
        """Parks what cannot be run on the dead-letter exchange, then settles it: the delivery's
        body unchanged, with its properties; or ``part`` alone, as its own JSON (one step of a
        ``steps`` message, its siblings run)."""
        text = reason.reason if len(reason.reason) <= MAX_REASON_CHARS else reason.reason[:MAX_REASON_CHARS] + "…"
        log.error("invalid step message parked in the dead letters: %s %s", reason.code, text)
        props = delivery.props
        headers = dict(props.headers or {})
        headers.update({"x-tasker-reason": text, "x-tasker-code": reason.code, "x-tasker-source-queue": self.queue})
        if part is None:
            body = delivery.body
            properties = pika.BasicProperties(
                # The body may not be JSON at all: keep what the sender said, claim nothing otherwise.
                content_type=props.content_type or "application/octet-stream",
                delivery_mode=2,
                headers=headers,
                message_id=props.message_id,
                correlation_id=props.correlation_id,
                type=props.type,
            )
        else:
            # One step taken out of a ``steps`` message is JSON, a ``step``; the envelope's id is not its own.
            body = part.body
            properties = pika.BasicProperties(content_type="application/json", delivery_mode=2, headers=headers, type="step")
        try:
            self._publish.basic_publish(self.names.dead_letter_exchange, parked_routing_key(self.namespace), body, properties)
        except pika.exceptions.NackError:
            log.error("could not park the invalid step message; it goes back to the queue")
            self._step_ended(delivery, "failed")
            return
        self._step_ended(delivery)

    # ── task requests (ctx.create_task) ──────────────────────────────────────────────

    def _request_task(self, request: dict, timeout: float) -> dict:
        """Runs on a handler's thread: publishes on the connection's thread, waits here."""
        corr = uuid.uuid4().hex
        done = threading.Event()
        slot: list = [done, None]
        with self._replies_lock:
            self._replies[corr] = slot
        conn = self._conn

        def publish() -> None:
            try:
                self._requests.basic_publish(
                    self.names.task_requests_exchange,
                    request["namespace"],
                    dumps(request),
                    pika.BasicProperties(
                        content_type="application/json",
                        delivery_mode=2,
                        reply_to=DIRECT_REPLY_TO,
                        correlation_id=corr,
                        type="task_request",
                    ),
                    mandatory=True,
                )
            except pika.exceptions.UnroutableError:
                self._settle(corr, {"ok": False, "error": {"code": INTERNAL, "message": f"task request was unroutable: no queue is bound to {self.names.task_requests_exchange}"}})
            except Exception as e:  # noqa: BLE001
                self._settle(corr, {"ok": False, "error": {"code": INTERNAL, "message": f"task request not accepted by the broker: {e}"}})

        try:
            if conn is None:
                raise RuntimeError("not connected")
            conn.add_callback_threadsafe(publish)
        except Exception as e:  # noqa: BLE001
            self._settle(corr, {"ok": False, "error": {"code": INTERNAL, "message": f"cannot send the task request: {e}"}})
        if not done.wait(timeout):
            with self._replies_lock:
                self._replies.pop(corr, None)
            return {"ok": False, "error": {"code": INTERNAL, "message": f"no reply to the task request within {timeout} s; retrying with the same idempotency key is safe"}}
        return slot[1]

    def _settle(self, corr: str, reply: dict) -> None:
        with self._replies_lock:
            slot = self._replies.pop(corr, None)
        if slot:
            slot[1] = reply
            slot[0].set()

    def _on_reply(self, _ch: Any, _method: Any, props: Any, body: bytes) -> None:
        try:
            reply = json.loads(body.decode("utf-8"))
        except ValueError:
            reply = {"ok": False, "error": {"code": "INVALID_MESSAGE", "message": "task reply is not JSON"}}
        if props.correlation_id is None or not isinstance(reply, dict):
            return
        self._settle(props.correlation_id, reply)
