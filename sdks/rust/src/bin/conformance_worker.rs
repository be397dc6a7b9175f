//! The Rust SDK's conformance worker: the kit's handlers (packages/conformance/README.md),
//! served over the exec bridge.
//!
//!   pnpm conformance --namespace conf_rs -- node --import tsx packages/worker/src/bin/exec-worker.ts \
//!     -- sdks/rust/target/debug/tasker-conformance-worker
use std::thread;
use std::time::Duration;
use tasker_worker::{json, Outcome, StepContext, StepError, Value, Worker};

fn succeed(input: &Value) -> Result<Value, String> {
    Ok(json!({"ok": true, "value": input.get("value").cloned().unwrap_or(Value::Null)}))
}

fn fail_permanent(_: &StepContext) -> Result<Value, StepError> {
    Err(StepError::permanent("permanent failure requested").with_code("CONFORMANCE_PERMANENT").with_details(json!({"reason": "conformance"})))
}

fn fail_retryable(ctx: &StepContext) -> Result<Value, StepError> {
    if ctx.attempt == 1 {
        let after = ctx.get_input("retry_after_ms").and_then(Value::as_u64).unwrap_or(1000);
        return Err(StepError::retryable("retry requested").with_code("CONFORMANCE_RETRY").with_retry_after_ms(after));
    }
    Ok(json!({"attempt": ctx.attempt}))
}

fn produce(input: &Value) -> Result<Value, String> {
    Ok(json!({"token": input.get("token").cloned().unwrap_or(Value::Null), "n": 42}))
}

fn consume(ctx: &StepContext) -> Result<Value, StepError> {
    Ok(json!({
        "input_token": ctx.get_input("token").cloned().unwrap_or(Value::Null),
        "produced": ctx.dependency_result("produce").cloned().unwrap_or(Value::Null),
        "task_id": ctx.task_id,
        "step_id": ctx.step_id,
        "step_name": ctx.step_name,
        "namespace": ctx.namespace,
        "task_name": ctx.task_name,
        "attempt": ctx.attempt,
        "max_attempts": ctx.max_attempts,
        "idempotency_key": ctx.idempotency_key,
    }))
}

fn initialization(ctx: &StepContext) -> Result<Value, StepError> {
    Ok(json!({"initialization": ctx.initialization}))
}

fn large(input: &Value) -> Result<Value, String> {
    let size = input.get("size").and_then(Value::as_u64).unwrap_or(0) as usize;
    let data: String = "0123456789".chars().cycle().take(size).collect();
    Ok(json!({"size": size, "data": data}))
}

fn unicode(input: &Value) -> Result<Value, String> {
    let text = input.get("text").and_then(Value::as_str).unwrap_or("");
    Ok(json!({
        "text": text,
        "payload": input.get("payload").cloned().unwrap_or(Value::Null),
        "code_points": text.chars().count(),
    }))
}

fn delegate(ctx: &StepContext) -> Result<Outcome, StepError> {
    let value = ctx.get_input("value").cloned().unwrap_or(Value::Null);
    let child = ctx.create_task(&ctx.namespace, "conformance_success", json!({ "value": value }))?;
    Ok(ctx.wait_for(child["id"].as_str().unwrap_or("")))
}

fn sleep(ctx: &StepContext) -> Result<Value, StepError> {
    let ms = ctx.get_input("sleep_ms").and_then(Value::as_u64).unwrap_or(0);
    // Deliberately ignores ctx.is_cancelled(): the runtime must enforce the timeout on its own.
    thread::sleep(Duration::from_millis(ms));
    Ok(json!({"slept_ms": ms, "attempt": ctx.attempt, "idempotency_key": ctx.idempotency_key}))
}

fn main() -> std::io::Result<()> {
    Worker::new()
        .handler("conformance_succeed", succeed)
        .step_handler("conformance_fail_permanent", fail_permanent)
        .step_handler("conformance_fail_retryable", fail_retryable)
        .handler("conformance_produce", produce)
        .step_handler("conformance_consume", consume)
        .step_handler("conformance_initialization", initialization)
        .handler("conformance_large", large)
        .handler("conformance_unicode", unicode)
        .step_handler("conformance_delegate", delegate)
        .step_handler("conformance_sleep", sleep)
        .run()
}
