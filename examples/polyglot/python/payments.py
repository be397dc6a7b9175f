"""The Payments team's handlers for payments.process_refund, in Python
(templates/payments/process_refund.yaml; the same rules as
examples/refunds/src/payments/handlers.ts). Every result names its namespace."""
import hashlib
import math

from tasker_worker import PermanentError, RetryableError
from tasker_worker.messages import now_iso

NAMESPACE = "payments"
GIFT_CARD_REFUND_LIMIT = 500


def refund_supported(payment_method, amount):
    """Whether a payment method supports an automated refund of this amount."""
    if payment_method in ("credit_card", "debit_card", "bank_transfer"):
        return True
    if payment_method == "gift_card":
        return amount <= GIFT_CARD_REFUND_LIMIT
    if payment_method == "crypto":
        return False
    return True


def stable_id(prefix, *parts):
    """A short stable id: the same input always gives the same id."""
    return f"{prefix}_{hashlib.sha256(chr(0).join(parts).encode('utf-8')).hexdigest()[:16]}"


def _dependency(ctx, step):
    r = ctx.get_dependency_result(step)
    if r is None:
        raise PermanentError(f"result of step '{step}' is missing; is the template's dependency list intact?", code="MISSING_DEPENDENCY_RESULT")
    return r


def validate_eligibility(ctx):
    payment_id, amount = ctx.get_input("payment_id"), ctx.get_input("refund_amount")
    missing = []
    if not isinstance(payment_id, str) or payment_id == "":
        missing.append("payment_id")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount):
        missing.append("refund_amount")
    if missing:
        raise PermanentError(f"Missing or invalid fields: {', '.join(missing)}", code="MISSING_FIELDS", details={"missing": missing})
    if amount <= 0:
        raise PermanentError(f"Refund amount must be positive (got {amount})", code="INVALID_AMOUNT")
    method = ctx.get_input("payment_method") or "credit_card"
    if not refund_supported(method, amount):
        raise PermanentError(
            f"Payment method '{method}' does not support automated refunds of {amount}",
            code="PAYMENT_METHOD_NOT_REFUNDABLE",
            details={"payment_method": method, "refund_amount": amount},
        )
    return {
        "payment_validated": True,
        "payment_id": payment_id,
        "refund_amount": amount,
        "payment_method": method,
        "eligibility_status": "eligible",
        "validation_timestamp": now_iso(),
        "namespace": NAMESPACE,
    }


def process_gateway_refund(ctx):
    """The simulated processor: simulate_gateway_failures N makes attempts 1..N fail
    transiently; the step's retry policy decides when the next attempt runs."""
    eligibility = _dependency(ctx, "validate_payment_eligibility")
    failures = ctx.get_input("simulate_gateway_failures", 0)
    if ctx.attempt <= failures:
        raise RetryableError("gateway timeout", code="GATEWAY_UNAVAILABLE", details={"simulated": True, "attempt": ctx.attempt, "failing_attempts": failures})
    return {
        "refund_processed": True,
        # Keyed on the idempotency key, as a real gateway call would be: a redelivery of this
        # attempt gets the same refund, not a second one.
        "refund_id": stable_id("rfnd", ctx.idempotency_key),
        "payment_id": eligibility["payment_id"],
        "refund_amount": eligibility["refund_amount"],
        "gateway": "simulated",
        "gateway_status": "succeeded",
        "attempt": ctx.attempt,
        "processed_at": now_iso(),
        "namespace": NAMESPACE,
    }


def update_records(ctx):
    refund = _dependency(ctx, "process_gateway_refund")
    return {
        "records_updated": True,
        "payment_id": refund["payment_id"],
        "refund_id": refund["refund_id"],
        "record_id": stable_id("rec", ctx.task_id, refund["refund_id"]),
        "payment_status": "refunded",
        "refund_reason": ctx.get_input("refund_reason"),
        "correlation_id": ctx.correlation_id,
        "updated_at": now_iso(),
        "namespace": NAMESPACE,
    }


def notify_customer(ctx):
    refund = _dependency(ctx, "process_gateway_refund")
    email = ctx.get_input("customer_email")
    if not email:
        return {"notification_sent": False, "reason": "no customer_email in the task context", "namespace": NAMESPACE}
    return {
        "notification_sent": True,
        "customer_email": email,
        "message_id": stable_id("msg", ctx.task_id, refund["refund_id"]),
        "notification_type": "refund_confirmation",
        "refund_id": refund["refund_id"],
        "refund_amount": refund["refund_amount"],
        "sent_at": now_iso(),
        "namespace": NAMESPACE,
    }


#: By the template's handler.callable.
HANDLERS = {
    "team_scaling_payments_validate_eligibility": validate_eligibility,
    "team_scaling_payments_process_gateway_refund": process_gateway_refund,
    "team_scaling_payments_update_records": update_records,
    "team_scaling_payments_notify_customer": notify_customer,
}
