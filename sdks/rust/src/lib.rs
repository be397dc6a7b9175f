//! # tasker-worker: Tasker step handlers in Rust
//!
//! Handlers are plain functions over `serde_json::Value`. A binary registers them by the
//! templates' `handler.callable` and calls [`Worker::run`]; the TypeScript worker runtime
//! starts that binary and talks to it through the **exec bridge** (JSON lines on stdin and
//! stdout, `docs/protocol.md`), consuming the namespace's RabbitMQ queue for it: acks after
//! confirmed results, timeouts, parking of malformed messages and graceful shutdown are the
//! runtime's, so this crate needs nothing but `serde_json`.
//!
//! ```no_run
//! use serde_json::{json, Value};
//! use tasker_worker::{StepContext, StepError, Worker};
//!
//! // The mission's form: the task's context in, a result or an error out.
//! // `Err(String)` is a permanent failure.
//! fn validate(context: &Value) -> Result<Value, String> {
//!     let amount = context.get("refund_amount").and_then(Value::as_f64).ok_or("Missing refund_amount")?;
//!     if amount <= 0.0 { return Err("Refund amount must be positive".to_string()); }
//!     Ok(json!({ "payment_validated": true, "namespace": "payments" }))
//! }
//!
//! // The richer form: the whole step context, and errors that can be retryable.
//! fn refund(ctx: &StepContext) -> Result<Value, StepError> {
//!     if ctx.attempt == 1 {
//!         return Err(StepError::retryable("gateway busy").with_code("GATEWAY_BUSY").with_retry_after_ms(2000));
//!     }
//!     Ok(json!({ "refund_id": format!("rfnd_{}", ctx.idempotency_key) }))
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     Worker::new()
//!         .handler("team_scaling_payments_validate_eligibility", validate)
//!         .step_handler("team_scaling_payments_process_gateway_refund", refund)
//!         .run()
//! }
//! ```
//!
//! Run it for a namespace with the runtime's exec worker:
//! `pnpm exec-worker --namespace payments -- target/release/payments-worker`.

mod context;
mod error;
mod time;
mod worker;

pub use context::{Outcome, StepContext};
pub use error::{ErrorKind, StepError, HANDLER_ERROR, PERMANENT_ERROR, RETRYABLE_ERROR};
pub use time::now_rfc3339;
pub use worker::{Worker, EXEC_PROTOCOL};

/// Re-exported so handler crates need no direct dependency of their own.
pub use serde_json;
pub use serde_json::{json, Value};
