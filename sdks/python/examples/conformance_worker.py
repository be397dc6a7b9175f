#!/usr/bin/python3
"""The Python SDK's conformance worker: the kit's handlers (packages/conformance/README.md).

    pnpm conformance --namespace conf_py -- /usr/bin/python3 sdks/python/examples/conformance_worker.py
"""
import logging
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tasker_worker import PermanentError, RetryableError, Worker  # noqa: E402


def conformance_succeed(ctx):
    return {"ok": True, "value": ctx.get_input("value")}


def conformance_fail_permanent(ctx):
    raise PermanentError("permanent failure requested", code="CONFORMANCE_PERMANENT", details={"reason": "conformance"})


def conformance_fail_retryable(ctx):
    if ctx.attempt == 1:
        raise RetryableError("retry requested", code="CONFORMANCE_RETRY", retry_after_ms=ctx.get_input("retry_after_ms", 1000))
    return {"attempt": ctx.attempt}


def conformance_produce(ctx):
    return {"token": ctx.get_input("token"), "n": 42}


def conformance_consume(ctx):
    return {
        "input_token": ctx.get_input("token"),
        "produced": ctx.get_dependency_result("produce"),
        "task_id": ctx.task_id,
        "step_id": ctx.step_id,
        "step_name": ctx.step_name,
        "namespace": ctx.namespace,
        "task_name": ctx.task_name,
        "attempt": ctx.attempt,
        "max_attempts": ctx.max_attempts,
        "idempotency_key": ctx.idempotency_key,
    }


def conformance_initialization(ctx):
    return {"initialization": ctx.initialization}


def conformance_large(ctx):
    size = ctx.get_input("size", 0)
    return {"size": size, "data": ("0123456789" * (size // 10 + 1))[:size]}


def conformance_unicode(ctx):
    text = ctx.get_input("text", "")
    return {"text": text, "payload": ctx.get_input("payload"), "code_points": len(text)}


def conformance_delegate(ctx):
    created = ctx.create_task(ctx.namespace, "conformance_success", {"value": ctx.get_input("value")})
    return ctx.wait_for(created["task"]["id"])


def conformance_sleep(ctx):
    ms = ctx.get_input("sleep_ms", 0)
    time.sleep(ms / 1000)  # deliberately not ctx.sleep(): the runtime must enforce the timeout on its own
    return {"slept_ms": ms, "attempt": ctx.attempt, "idempotency_key": ctx.idempotency_key}


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("TASKER_LOG_LEVEL", "info").upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)
    handlers = {name: fn for name, fn in globals().items() if name.startswith("conformance_") and callable(fn)}
    Worker(handlers=handlers, concurrency=16).run()
