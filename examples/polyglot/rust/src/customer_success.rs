//! The Customer Success team's handlers for `customer_success.process_refund`
//! (templates/customer_success/process_refund.yaml; the same rules as the TypeScript,
//! Python and Ruby ones). The cross-namespace step creates a `payments.process_refund`
//! task through the runtime (`ctx.create_task`). Every result names its namespace.
use tasker_worker::{json, now_rfc3339, Outcome, StepContext, StepError, Value, Worker};

pub const NAMESPACE: &str = "customer_success";
pub const VALID_REASONS: [&str; 5] = ["defective", "not_as_described", "changed_mind", "late_delivery", "duplicate_charge"];

fn blank(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        _ => false,
    }
}

fn permanent(code: &str, message: String) -> StepError {
    StepError::permanent(message).with_code(code)
}

fn dependency<'a>(ctx: &'a StepContext, step: &str) -> Result<&'a Value, StepError> {
    match ctx.dependency_result(step) {
        Some(v) if !v.is_null() => Ok(v),
        _ => Err(permanent("MISSING_DEPENDENCY_RESULT", format!("result of step '{}' is missing; is the template's dependency list intact?", step))),
    }
}

fn setting(ctx: &StepContext, key: &str) -> Result<f64, StepError> {
    ctx.initialization
        .get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| permanent("INVALID_CONFIGURATION", format!("handler.initialization.{} must be a number in the template (got {})", key, ctx.initialization.get(key).cloned().unwrap_or(Value::Null))))
}

pub fn validate_refund_request(ctx: &StepContext) -> Result<Value, StepError> {
    let fields = ["ticket_id", "customer_id", "refund_amount", "refund_reason"];
    let missing: Vec<&str> = fields.iter().copied().filter(|f| blank(ctx.get_input(f))).collect();
    if !missing.is_empty() {
        return Err(permanent("MISSING_FIELDS", format!("Missing required fields: {}", missing.join(", "))).with_details(json!({"missing": missing})));
    }
    let reason = ctx.get_input("refund_reason").and_then(Value::as_str).unwrap_or("");
    if !VALID_REASONS.contains(&reason) {
        return Err(permanent("INVALID_REASON", format!("Invalid reason: {}. Must be one of: {}", reason, VALID_REASONS.join(", ")))
            .with_details(json!({"reason": reason, "valid_reasons": VALID_REASONS})));
    }
    let raw_amount = ctx.get_input("refund_amount").cloned().unwrap_or(Value::Null);
    let amount = match &raw_amount {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let amount = match amount {
        Some(a) if a.is_finite() && a > 0.0 => a,
        _ => return Err(permanent("INVALID_AMOUNT", format!("refund_amount must be a positive number (got {})", raw_amount))),
    };
    let ticket_id = ctx.get_input("ticket_id").and_then(Value::as_str).unwrap_or("");
    let payment_id = match ctx.get_input("payment_id").and_then(Value::as_str) {
        Some(p) if !p.trim().is_empty() => p.to_string(),
        // The demo's shop has one payment per ticket: derived from it when the input has none.
        _ => format!("pay_{}", ticket_id),
    };
    ctx.log("info", &format!("refund request validated: ticket {}, {}", ticket_id, amount));
    Ok(json!({
        "request_validated": true,
        "ticket_id": ticket_id,
        "customer_id": ctx.get_input("customer_id"),
        "refund_amount": amount,
        "reason": reason,
        "customer_email": ctx.get_input("customer_email").cloned().unwrap_or(Value::Null),
        "payment_id": payment_id,
        "namespace": NAMESPACE,
        "validated_at": now_rfc3339(),
    }))
}

pub fn check_refund_policy(ctx: &StepContext) -> Result<Value, StepError> {
    let request = dependency(ctx, "validate_refund_request")?;
    let auto_approve_limit = setting(ctx, "auto_approve_limit")?;
    let max_refund_amount = setting(ctx, "max_refund_amount")?;
    let amount = request["refund_amount"].as_f64().unwrap_or(0.0);
    if amount > max_refund_amount {
        return Err(permanent("POLICY_LIMIT_EXCEEDED", format!("Refund of {} exceeds the policy maximum of {}", amount, max_refund_amount))
            .with_details(json!({"refund_amount": amount, "max_refund_amount": max_refund_amount})));
    }
    let agent_asked = ctx.get_input("requires_approval") == Some(&Value::Bool(true));
    let over_limit = amount > auto_approve_limit;
    let why = if over_limit {
        format!("amount {} is above the auto-approve limit of {}", amount, auto_approve_limit)
    } else if agent_asked {
        "the agent asked for approval".to_string()
    } else {
        format!("amount {} is within the auto-approve limit of {}", amount, auto_approve_limit)
    };
    Ok(json!({
        "policy_checked": true,
        "refund_amount": amount,
        "requires_approval": over_limit || agent_asked,
        "approval_reason": why,
        "auto_approve_limit": auto_approve_limit,
        "max_refund_amount": max_refund_amount,
        "namespace": NAMESPACE,
        "checked_at": now_rfc3339(),
    }))
}

/// A real team would wait for a manager; this simulated one approves at once.
pub fn get_manager_approval(ctx: &StepContext) -> Result<Value, StepError> {
    let policy = dependency(ctx, "check_refund_policy")?;
    if policy["requires_approval"] != Value::Bool(true) {
        return Ok(json!({"approval_obtained": true, "approval_required": false, "approver": null, "approved_at": null, "namespace": NAMESPACE}));
    }
    Ok(json!({"approval_obtained": true, "approval_required": true, "approver": "manager_sim_01", "approved_at": now_rfc3339(), "namespace": NAMESPACE}))
}

/// Cross-namespace coordination: a `payments.process_refund` task, created through the
/// runtime, parented to this step and keyed on it (a retried step gets the same task back);
/// the step then waits for it without holding a worker and completes with its outcome.
pub fn execute_refund_workflow(ctx: &StepContext) -> Result<Outcome, StepError> {
    dependency(ctx, "get_manager_approval")?;
    let validation = dependency(ctx, "validate_refund_request")?;
    let mut context = json!({
        "payment_id": validation["payment_id"],
        "refund_amount": validation["refund_amount"],
        "refund_reason": "customer_request",
        "correlation_id": ctx.task_id,
    });
    if let Some(email) = validation.get("customer_email").and_then(Value::as_str) {
        context["customer_email"] = json!(email);
    }
    for passed_through in ["payment_method", "simulate_gateway_failures"] {
        if let Some(v) = ctx.get_input(passed_through) {
            context[passed_through] = v.clone();
        }
    }
    let task = ctx.create_task("payments", "process_refund", context)?;
    let task_id = task["id"].as_str().unwrap_or("").to_string();
    ctx.log("info", &format!("refund delegated to payments.process_refund {}; waiting for it", task_id));
    Ok(ctx.wait_for(&task_id))
}

pub fn update_ticket_status(ctx: &StepContext) -> Result<Value, StepError> {
    let request = dependency(ctx, "validate_refund_request")?;
    // The payments task's outcome: {task_id, namespace, name, results: {step: result}}.
    let payout = dependency(ctx, "execute_refund_workflow")?;
    let notice = &payout["results"]["notify_customer"];
    let amount = if notice["refund_amount"].is_null() { request["refund_amount"].clone() } else { notice["refund_amount"].clone() };
    Ok(json!({
        "ticket_updated": true,
        "ticket_id": request["ticket_id"],
        "new_status": "refunded",
        "note": format!("Refunded {} by payments (task {}, refund {})", amount, payout["task_id"].as_str().unwrap_or("?"), notice["refund_id"].as_str().unwrap_or("?")),
        "payment_task_id": payout["task_id"],
        "refund_id": notice["refund_id"],
        "customer_notified": notice["notification_sent"].as_bool().unwrap_or(false),
        "namespace": NAMESPACE,
        "updated_at": now_rfc3339(),
    }))
}

/// The team's worker: its handlers by the template's callables.
pub fn worker() -> Worker {
    Worker::new()
        .step_handler("CustomerSuccess::StepHandlers::ValidateRefundRequestHandler", validate_refund_request)
        .step_handler("CustomerSuccess::StepHandlers::CheckRefundPolicyHandler", check_refund_policy)
        .step_handler("CustomerSuccess::StepHandlers::GetManagerApprovalHandler", get_manager_approval)
        .step_handler("CustomerSuccess::StepHandlers::ExecuteRefundWorkflowHandler", execute_refund_workflow)
        .step_handler("CustomerSuccess::StepHandlers::UpdateTicketStatusHandler", update_ticket_status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Value {
        json!({"ticket_id": "TICKET-1234", "customer_id": "cust_abc123", "refund_amount": 49.99, "refund_reason": "defective", "customer_email": "customer@example.com"})
    }

    #[test]
    fn a_valid_request_is_validated_with_a_derived_payment_id() {
        let r = validate_refund_request(&StepContext::for_test(request())).unwrap();
        assert_eq!(r["payment_id"], "pay_TICKET-1234");
        assert_eq!(r["refund_amount"], 49.99);
        assert_eq!(r["namespace"], "customer_success");
    }

    #[test]
    fn missing_fields_and_bad_reasons_are_permanent_with_codes() {
        let err = validate_refund_request(&StepContext::for_test(json!({"refund_reason": "defective"}))).unwrap_err();
        assert_eq!(err.code.as_deref(), Some("MISSING_FIELDS"));
        assert_eq!(err.message, "Missing required fields: ticket_id, customer_id, refund_amount");
        let mut bored = request();
        bored["refund_reason"] = json!("bored");
        let err = validate_refund_request(&StepContext::for_test(bored)).unwrap_err();
        assert_eq!(err.code.as_deref(), Some("INVALID_REASON"));
        assert_eq!(err.kind, tasker_worker::ErrorKind::Permanent);
    }

    #[test]
    fn policy_reads_its_limits_from_the_initialization() {
        let validated = validate_refund_request(&StepContext::for_test(request())).unwrap();
        let ctx = StepContext::for_test(request())
            .with_dependency("validate_refund_request", validated)
            .with_initialization(json!({"auto_approve_limit": 10, "max_refund_amount": 5000}));
        let r = check_refund_policy(&ctx).unwrap();
        assert_eq!(r["requires_approval"], true);
        let no_config = StepContext::for_test(request()).with_dependency("validate_refund_request", json!({"refund_amount": 1}));
        assert_eq!(check_refund_policy(&no_config).unwrap_err().code.as_deref(), Some("INVALID_CONFIGURATION"));
    }
}
