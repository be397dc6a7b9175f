"""The Customer Success team's handlers for customer_success.process_refund, in Python
(templates/customer_success/process_refund.yaml; the same rules as
examples/refunds/src/customer-success/handlers.ts). Every result names its namespace."""
from tasker_worker import PermanentError
from tasker_worker.messages import now_iso

NAMESPACE = "customer_success"
VALID_REASONS = ["defective", "not_as_described", "changed_mind", "late_delivery", "duplicate_charge"]


def _blank(v):
    return v is None or (isinstance(v, str) and v.strip() == "")


def _dependency(ctx, step):
    r = ctx.get_dependency_result(step)
    if r is None:
        raise PermanentError(f"result of step '{step}' is missing; is the template's dependency list intact?", code="MISSING_DEPENDENCY_RESULT")
    return r


def _setting(ctx, key):
    v = ctx.initialization.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise PermanentError(f"handler.initialization.{key} must be a number in the template (got {v!r})", code="INVALID_CONFIGURATION")
    return v


def validate_refund_request(ctx):
    ticket_id, customer_id = ctx.get_input("ticket_id"), ctx.get_input("customer_id")
    amount, reason = ctx.get_input("refund_amount"), ctx.get_input("refund_reason")
    missing = [name for name, v in (("ticket_id", ticket_id), ("customer_id", customer_id), ("refund_amount", amount), ("refund_reason", reason)) if _blank(v)]
    if missing:
        raise PermanentError(f"Missing required fields: {', '.join(missing)}", code="MISSING_FIELDS", details={"missing": missing})
    if reason not in VALID_REASONS:
        raise PermanentError(
            f"Invalid reason: {reason}. Must be one of: {', '.join(VALID_REASONS)}",
            code="INVALID_REASON",
            details={"reason": reason, "valid_reasons": VALID_REASONS},
        )
    try:
        refund_amount = float(amount)
    except (TypeError, ValueError):
        refund_amount = float("nan")
    if not refund_amount > 0 or refund_amount == float("inf"):
        raise PermanentError(f"refund_amount must be a positive number (got {amount!r})", code="INVALID_AMOUNT")
    payment_id = ctx.get_input("payment_id")
    ctx.logger.info("refund request validated: ticket %s, %s", ticket_id, refund_amount)
    return {
        "request_validated": True,
        "ticket_id": ticket_id,
        "customer_id": customer_id,
        "refund_amount": refund_amount,
        "reason": reason,
        "customer_email": ctx.get_input("customer_email"),
        # The demo's shop has one payment per ticket: derived from it when the input has none.
        "payment_id": f"pay_{ticket_id}" if _blank(payment_id) else payment_id,
        "namespace": NAMESPACE,
        "validated_at": now_iso(),
    }


def check_refund_policy(ctx):
    request = _dependency(ctx, "validate_refund_request")
    auto_approve_limit = _setting(ctx, "auto_approve_limit")
    max_refund_amount = _setting(ctx, "max_refund_amount")
    amount = request["refund_amount"]
    if amount > max_refund_amount:
        raise PermanentError(
            f"Refund of {amount} exceeds the policy maximum of {max_refund_amount}",
            code="POLICY_LIMIT_EXCEEDED",
            details={"refund_amount": amount, "max_refund_amount": max_refund_amount},
        )
    agent_asked = ctx.get_input("requires_approval") is True
    over_limit = amount > auto_approve_limit
    if over_limit:
        why = f"amount {amount} is above the auto-approve limit of {auto_approve_limit}"
    elif agent_asked:
        why = "the agent asked for approval"
    else:
        why = f"amount {amount} is within the auto-approve limit of {auto_approve_limit}"
    return {
        "policy_checked": True,
        "refund_amount": amount,
        "requires_approval": over_limit or agent_asked,
        "approval_reason": why,
        "auto_approve_limit": auto_approve_limit,
        "max_refund_amount": max_refund_amount,
        "namespace": NAMESPACE,
        "checked_at": now_iso(),
    }


def get_manager_approval(ctx):
    """A real team would wait for a manager; this simulated one approves at once."""
    policy = _dependency(ctx, "check_refund_policy")
    if not policy["requires_approval"]:
        return {"approval_obtained": True, "approval_required": False, "approver": None, "approved_at": None, "namespace": NAMESPACE}
    return {"approval_obtained": True, "approval_required": True, "approver": "manager_sim_01", "approved_at": now_iso(), "namespace": NAMESPACE}


def execute_refund_workflow(ctx):
    """Cross-namespace coordination: a payments.process_refund task, created with a task
    request (the SDK sets the parent, carries the correlation id and keys the request on the
    step, so a retried step gets back the task it created the first time). The step then
    waits for that task without holding a worker and completes with its outcome."""
    _dependency(ctx, "get_manager_approval")
    request = _dependency(ctx, "validate_refund_request")
    context = {
        "payment_id": request["payment_id"],
        "refund_amount": request["refund_amount"],
        "refund_reason": "customer_request",
        "correlation_id": ctx.task_id,
    }
    if request.get("customer_email"):
        context["customer_email"] = request["customer_email"]
    for passed_through in ("payment_method", "simulate_gateway_failures"):
        if ctx.get_input(passed_through) is not None:
            context[passed_through] = ctx.get_input(passed_through)
    created = ctx.create_task("payments", "process_refund", context)
    ctx.logger.info("refund delegated to payments.process_refund %s; waiting for it", created["task"]["id"])
    return ctx.wait_for(created["task"]["id"])


def update_ticket_status(ctx):
    request = _dependency(ctx, "validate_refund_request")
    # The payments task's outcome: {task_id, namespace, name, results: {step: result}}.
    payout = _dependency(ctx, "execute_refund_workflow")
    notice = (payout.get("results") or {}).get("notify_customer") or {}
    return {
        "ticket_updated": True,
        "ticket_id": request["ticket_id"],
        "new_status": "refunded",
        "note": f"Refunded {notice.get('refund_amount', request['refund_amount'])} by payments (task {payout['task_id']}, refund {notice.get('refund_id')})",
        "payment_task_id": payout["task_id"],
        "refund_id": notice.get("refund_id"),
        "customer_notified": notice.get("notification_sent", False),
        "namespace": NAMESPACE,
        "updated_at": now_iso(),
    }


#: By the template's handler.callable.
HANDLERS = {
    "CustomerSuccess::StepHandlers::ValidateRefundRequestHandler": validate_refund_request,
    "CustomerSuccess::StepHandlers::CheckRefundPolicyHandler": check_refund_policy,
    "CustomerSuccess::StepHandlers::GetManagerApprovalHandler": get_manager_approval,
    "CustomerSuccess::StepHandlers::ExecuteRefundWorkflowHandler": execute_refund_workflow,
    "CustomerSuccess::StepHandlers::UpdateTicketStatusHandler": update_ticket_status,
}
