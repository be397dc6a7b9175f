"""Tasker worker SDK for Python: plain functions as step handlers, on RabbitMQ (pika).

    from tasker_worker import Worker, PermanentError, RetryableError

    def validate_eligibility(ctx):
        amount = ctx.get_input("refund_amount")
        if amount is None or amount <= 0:
            raise PermanentError("Refund amount must be positive", code="INVALID_AMOUNT")
        return {"payment_validated": True, "namespace": "payments"}

    Worker(namespace="payments", handlers={"team_scaling_payments_validate_eligibility": validate_eligibility}).run()

The wire protocol is docs/protocol.md; the behaviour is the TypeScript worker's.
"""
from .context import StepContext, WaitFor
from .errors import HANDLER_ERROR, PERMANENT_ERROR, RETRYABLE_ERROR, PermanentError, RetryableError, TaskRequestError
from .messages import PROTOCOL_VERSION, Names
from .worker import Handler, Worker

__all__ = [
    "Worker",
    "Handler",
    "StepContext",
    "WaitFor",
    "PermanentError",
    "RetryableError",
    "TaskRequestError",
    "PERMANENT_ERROR",
    "RETRYABLE_ERROR",
    "HANDLER_ERROR",
    "PROTOCOL_VERSION",
    "Names",
]
