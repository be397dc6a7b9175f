//! The Payments team's handlers for `payments.process_refund`
//! (templates/payments/process_refund.yaml). `validate_payment_eligibility` is the
//! mission's function as written there (a plain `fn(&Value) -> Result<Value, String>`;
//! `Err` is a permanent failure); the others need the step context (attempt, dependency
//! results, ids). Every result names its namespace.
use crate::stable_id;
use tasker_worker::{json, now_rfc3339, StepContext, StepError, Value, Worker};

pub const NAMESPACE: &str = "payments";
/// Gift cards are refunded automatically only up to this amount.
pub const GIFT_CARD_REFUND_LIMIT: f64 = 500.0;

pub fn validate_payment_eligibility(context: &Value) -> Result<Value, String> {
    let payment_id = context.get("payment_id").and_then(|v| v.as_str()).ok_or("Missing payment_id in context")?;

    let refund_amount = context.get("refund_amount").and_then(|v| v.as_f64()).ok_or("Missing or invalid refund_amount")?;

    let payment_method = context.get("payment_method").and_then(|v| v.as_str()).unwrap_or("credit_card");

    if refund_amount <= 0.0 {
        return Err("Refund amount must be positive".to_string());
    }

    // Check if payment method supports refunds
    let refund_supported = match payment_method {
        "credit_card" | "debit_card" | "bank_transfer" => true,
        "gift_card" => refund_amount <= GIFT_CARD_REFUND_LIMIT,
        "crypto" => false,
        _ => true,
    };

    if !refund_supported {
        return Err(format!("Payment method '{}' does not support automated refunds", payment_method));
    }

    let now = now_rfc3339();

    Ok(json!({
        "payment_validated": true,
        "payment_id": payment_id,
        "refund_amount": refund_amount,
        "payment_method": payment_method,
        "eligibility_status": "eligible",
        "validation_timestamp": now,
        "namespace": "payments"
    }))
}

fn dependency<'a>(ctx: &'a StepContext, step: &str) -> Result<&'a Value, StepError> {
    match ctx.dependency_result(step) {
        Some(v) if !v.is_null() => Ok(v),
        _ => Err(StepError::permanent(format!("result of step '{}' is missing; is the template's dependency list intact?", step))
            .with_code("MISSING_DEPENDENCY_RESULT")),
    }
}

/// The simulated processor: `simulate_gateway_failures: N` makes attempts 1..N fail
/// transiently; the step's retry policy decides when the next attempt runs.
pub fn process_gateway_refund(ctx: &StepContext) -> Result<Value, StepError> {
    let eligibility = dependency(ctx, "validate_payment_eligibility")?;
    let failures = ctx.get_input("simulate_gateway_failures").and_then(Value::as_u64).unwrap_or(0);
    if ctx.attempt <= failures {
        return Err(StepError::retryable("gateway timeout")
            .with_code("GATEWAY_UNAVAILABLE")
            .with_details(json!({"simulated": true, "attempt": ctx.attempt, "failing_attempts": failures})));
    }
    Ok(json!({
        "refund_processed": true,
        // Keyed on the idempotency key, as a real gateway call would be: a redelivery of this
        // attempt gets the same refund, not a second one.
        "refund_id": stable_id("rfnd", &[&ctx.idempotency_key]),
        "payment_id": eligibility["payment_id"],
        "refund_amount": eligibility["refund_amount"],
        "gateway": "simulated",
        "gateway_status": "succeeded",
        "attempt": ctx.attempt,
        "processed_at": now_rfc3339(),
        "namespace": NAMESPACE,
    }))
}

pub fn update_payment_records(ctx: &StepContext) -> Result<Value, StepError> {
    let refund = dependency(ctx, "process_gateway_refund")?;
    let refund_id = refund["refund_id"].as_str().unwrap_or("");
    Ok(json!({
        "records_updated": true,
        "payment_id": refund["payment_id"],
        "refund_id": refund_id,
        "record_id": stable_id("rec", &[&ctx.task_id, refund_id]),
        "payment_status": "refunded",
        "refund_reason": ctx.get_input("refund_reason").cloned().unwrap_or(Value::Null),
        "correlation_id": ctx.correlation_id,
        "updated_at": now_rfc3339(),
        "namespace": NAMESPACE,
    }))
}

pub fn notify_customer(ctx: &StepContext) -> Result<Value, StepError> {
    let refund = dependency(ctx, "process_gateway_refund")?;
    let email = match ctx.get_input("customer_email").and_then(Value::as_str) {
        Some(e) if !e.is_empty() => e,
        // Internal tooling may refund without an address; there is nobody to tell.
        _ => return Ok(json!({"notification_sent": false, "reason": "no customer_email in the task context", "namespace": NAMESPACE})),
    };
    let refund_id = refund["refund_id"].as_str().unwrap_or("");
    Ok(json!({
        "notification_sent": true,
        "customer_email": email,
        "message_id": stable_id("msg", &[&ctx.task_id, refund_id]),
        "notification_type": "refund_confirmation",
        "refund_id": refund_id,
        "refund_amount": refund["refund_amount"],
        "sent_at": now_rfc3339(),
        "namespace": NAMESPACE,
    }))
}

/// The team's worker: its handlers by the template's callables.
pub fn worker() -> Worker {
    Worker::new()
        .handler("team_scaling_payments_validate_eligibility", validate_payment_eligibility)
        .step_handler("team_scaling_payments_process_gateway_refund", process_gateway_refund)
        .step_handler("team_scaling_payments_update_records", update_payment_records)
        .step_handler("team_scaling_payments_notify_customer", notify_customer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eligibility_follows_the_payment_method_rules() {
        assert!(validate_payment_eligibility(&json!({"payment_id": "p", "refund_amount": 49.99})).is_ok());
        assert_eq!(
            validate_payment_eligibility(&json!({"payment_id": "p", "refund_amount": 10, "payment_method": "crypto"})).unwrap_err(),
            "Payment method 'crypto' does not support automated refunds"
        );
        assert!(validate_payment_eligibility(&json!({"payment_id": "p", "refund_amount": 600, "payment_method": "gift_card"})).is_err());
        assert!(validate_payment_eligibility(&json!({"payment_id": "p", "refund_amount": 400, "payment_method": "gift_card"})).is_ok());
        assert_eq!(validate_payment_eligibility(&json!({"refund_amount": 1})).unwrap_err(), "Missing payment_id in context");
        assert_eq!(validate_payment_eligibility(&json!({"payment_id": "p", "refund_amount": -5})).unwrap_err(), "Refund amount must be positive");
    }

    #[test]
    fn the_gateway_fails_transiently_on_the_simulated_attempts_then_refunds_stably() {
        let eligibility = json!({"payment_id": "pay_1", "refund_amount": 19.99});
        let ctx = StepContext::for_test(json!({"simulate_gateway_failures": 1})).with_dependency("validate_payment_eligibility", eligibility.clone());
        let err = process_gateway_refund(&ctx).unwrap_err();
        assert_eq!(err.code.as_deref(), Some("GATEWAY_UNAVAILABLE"));
        assert_eq!(err.kind, tasker_worker::ErrorKind::Retryable);
        let ctx2 = StepContext::for_test(json!({"simulate_gateway_failures": 1})).with_dependency("validate_payment_eligibility", eligibility).with_attempt(2);
        let a = process_gateway_refund(&ctx2).unwrap();
        let b = process_gateway_refund(&ctx2).unwrap();
        assert_eq!(a["refund_id"], b["refund_id"]);
        assert_eq!(a["namespace"], "payments");
    }

    #[test]
    fn a_missing_dependency_is_a_permanent_error() {
        let err = update_payment_records(&StepContext::for_test(json!({}))).unwrap_err();
        assert_eq!(err.code.as_deref(), Some("MISSING_DEPENDENCY_RESULT"));
    }
}
