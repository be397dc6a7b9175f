"""What a handler gets for one attempt of one step."""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from .messages import IDENTIFIER_PATTERN, NAMESPACE_PATTERN

class WaitFor:
    """What ``ctx.wait_for(task_id)`` returns: the step waits for that task."""

    __slots__ = ("task_id",)

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id

    def __repr__(self) -> str:
        return f"WaitFor({self.task_id!r})"


#: Sends a task request and waits for the reply: (request, timeout seconds) -> reply dict.
RequestTask = Callable[[dict, float], dict]


class StepContext:
    """The step message's fields, plus cancellation, a logger and ``create_task``.

    Attributes: ``task_id``, ``step_id``, ``step_name``, ``namespace``, ``task_name``,
    ``task_version``, ``correlation_id``, ``attempt`` (1 for the first), ``max_attempts``,
    ``idempotency_key`` (``<step_id>:<attempt>``, stable across redeliveries: use it for side
    effects), ``callable``, ``method``, ``initialization`` (the template's
    ``handler.initialization``), ``input`` (the task's context), ``dependency_results`` (every
    ancestor step's result by step name), ``delivery_count``, ``logger``.
    """

    def __init__(
        self,
        message: dict,
        *,
        cancel_event: Optional[threading.Event] = None,
        request_task: Optional[RequestTask] = None,
        logger: Optional[logging.Logger] = None,
        delivery_count: int = 1,
    ) -> None:
        self.task_id: str = message["task_id"]
        self.step_id: str = message["step_id"]
        self.step_name: str = message["step_name"]
        self.namespace: str = message["namespace"]
        self.task_name: str = message.get("task_name", "")
        self.task_version: str = message.get("task_version", "")
        self.correlation_id: str = message.get("correlation_id", "")
        self.attempt: int = message["attempt"]
        self.max_attempts: int = message.get("max_attempts", message["attempt"])
        self.idempotency_key: str = message.get("idempotency_key", f"{self.step_id}:{self.attempt}")
        handler = message.get("handler", {})
        self.callable: str = handler.get("callable", "")
        self.method: Optional[str] = handler.get("method")
        self.initialization: dict = handler.get("initialization") or {}
        self.input: dict = message.get("input") or {}
        self.dependency_results: dict = message.get("dependency_results") or {}
        self.delivery_count = delivery_count
        self._cancel = cancel_event or threading.Event()
        self._request_task = request_task
        self._create_calls = 0
        base = logger or logging.getLogger("tasker_worker.handler")
        self.logger = logging.LoggerAdapter(
            base, {"task_id": self.task_id, "step": self.step_name, "step_id": self.step_id, "attempt": self.attempt, "namespace": self.namespace}
        )

    def get_input(self, key: str, default: Any = None) -> Any:
        """One field of the task's context."""
        return self.input.get(key, default)

    def get_dependency_result(self, step_name: str, default: Any = None) -> Any:
        """The result of a step this one depends on (directly or transitively), by step name."""
        return self.dependency_results.get(step_name, default)

    @property
    def cancelled(self) -> bool:
        """True once the step's timeout passed, or the worker stopped past its grace period.
        The step was answered already; a long handler may check this and give up."""
        return self._cancel.is_set()

    def sleep(self, seconds: float) -> bool:
        """Sleeps, waking early on cancellation. Returns False if cancelled."""
        return not self._cancel.wait(seconds)

    def wait_for(self, task_id: str) -> WaitFor:
        """Return this from a handler to make the step wait for a task it created, without
        holding a worker: ``return ctx.wait_for(ctx.create_task(...)["task"]["id"])``. The
        orchestrator completes the step with that task's outcome (``{task_id, namespace, name,
        results}``, ``results`` holding its final steps' results by name), or fails it with
        CHILD_TASK_FAILED / CHILD_TASK_CANCELLED."""
        if not isinstance(task_id, str) or not task_id:
            raise ValueError("wait_for needs the id of a task")
        return WaitFor(task_id)

    def create_task(
        self,
        namespace: str,
        name: str,
        context: dict,
        *,
        version: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        correlation_id: Optional[str] = None,
        requested_by: Optional[str] = None,
        timeout: float = 30.0,
    ) -> dict:
        """Creates a task in any namespace (the mission's cross-namespace step) with a task
        request on ``<prefix>.task_requests`` and waits for the orchestrator's reply.

        Defaults: the parent is this task and step, the correlation id this task's, and the
        idempotency key ``<step_id>:<namespace>.<name>:<n>`` (n counts calls in this
        invocation): it holds no attempt, so a retried or redelivered step gets back the task
        it created before instead of a second one.

        Returns ``{"created": bool, "task": {id, namespace, name, version, state, ...}}``.
        Raises TaskRequestError with the orchestrator's code on a refusal, ``INTERNAL`` when
        no reply came within ``timeout`` seconds.
        """
        from .errors import TaskRequestError

        self._create_calls += 1
        issues = []
        if not isinstance(namespace, str) or not NAMESPACE_PATTERN.match(namespace):
            issues.append({"path": "namespace", "message": "must be lower snake case"})
        if not isinstance(name, str) or not IDENTIFIER_PATTERN.match(name):
            issues.append({"path": "name", "message": "must be an identifier"})
        if not isinstance(context, dict):
            issues.append({"path": "context", "message": "must be an object"})
        if issues:
            raise TaskRequestError("INVALID_MESSAGE", "task request is not valid: " + "; ".join(f"{i['path']}: {i['message']}" for i in issues), issues)
        if self._request_task is None:
            raise TaskRequestError("INTERNAL", "this context is not connected to a worker")
        request: dict = {
            "protocol_version": 1,
            "message_type": "task_request",
            "namespace": namespace,
            "name": name,
            "context": context,
            "idempotency_key": idempotency_key or f"{self.step_id}:{namespace}.{name}:{self._create_calls}",
            "parent": {"task_id": self.task_id, "step_id": self.step_id},
        }
        corr = correlation_id or self.correlation_id
        if corr:
            request["correlation_id"] = corr
        if version is not None:
            request["version"] = version
        if requested_by is not None:
            request["requested_by"] = requested_by
        reply = self._request_task(request, timeout)
        if reply.get("ok") is True:
            return {"created": bool(reply.get("created")), "task": reply.get("task")}
        error = reply.get("error") or {}
        raise TaskRequestError(str(error.get("code", "INTERNAL")), str(error.get("message", "task request refused")), error.get("issues"))
