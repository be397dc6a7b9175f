use serde_json::{json, Map, Value};
use std::fmt;

/// Code of a permanent error that sets none.
pub const PERMANENT_ERROR: &str = "PERMANENT_ERROR";
/// Code of a retryable error that sets none.
pub const RETRYABLE_ERROR: &str = "RETRYABLE_ERROR";
/// Code of a handler that panicked (retryable, like any unexpected failure).
pub const HANDLER_ERROR: &str = "HANDLER_ERROR";

/// Whether the orchestrator may try the step again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Fail the step now, whatever attempts are left.
    Permanent,
    /// Retry under the step's retry policy while attempts remain.
    Retryable,
}

/// A handler's failure. `Err(String)` and `Err(&str)` convert into a permanent one, as the
/// mission's handlers expect; build a retryable one with [`StepError::retryable`].
#[derive(Debug, Clone, PartialEq)]
pub struct StepError {
    pub kind: ErrorKind,
    /// Upper snake case, e.g. `INVALID_AMOUNT`. `None`: `PERMANENT_ERROR` / `RETRYABLE_ERROR`.
    pub code: Option<String>,
    pub message: String,
    /// Retryable only: the delay before the next attempt, instead of the policy's backoff (capped by it).
    pub retry_after_ms: Option<u64>,
    /// Any JSON that helps whoever reads the failed step.
    pub details: Option<Value>,
}

impl StepError {
    pub fn permanent(message: impl Into<String>) -> Self {
        StepError { kind: ErrorKind::Permanent, code: None, message: message.into(), retry_after_ms: None, details: None }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        StepError { kind: ErrorKind::Retryable, code: None, message: message.into(), retry_after_ms: None, details: None }
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_retry_after_ms(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The `error` object of the bridge's failure result.
    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        let kind = match self.kind {
            ErrorKind::Permanent => "permanent",
            ErrorKind::Retryable => "retryable",
        };
        m.insert("kind".into(), json!(kind));
        let code = match (&self.code, self.kind) {
            (Some(c), _) => c.as_str(),
            (None, ErrorKind::Permanent) => PERMANENT_ERROR,
            (None, ErrorKind::Retryable) => RETRYABLE_ERROR,
        };
        m.insert("code".into(), json!(code));
        m.insert("message".into(), json!(self.message));
        if self.kind == ErrorKind::Retryable {
            if let Some(ms) = self.retry_after_ms {
                m.insert("retry_after_ms".into(), json!(ms));
            }
        }
        if let Some(d) = &self.details {
            m.insert("details".into(), d.clone());
        }
        Value::Object(m)
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{}: {}", code, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for StepError {}

impl From<String> for StepError {
    fn from(message: String) -> Self {
        StepError::permanent(message)
    }
}

impl From<&str> for StepError {
    fn from(message: &str) -> Self {
        StepError::permanent(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_string_error_is_permanent_with_the_default_code() {
        let e: StepError = "Refund amount must be positive".into();
        assert_eq!(
            e.to_json(),
            json!({"kind": "permanent", "code": "PERMANENT_ERROR", "message": "Refund amount must be positive"})
        );
    }

    #[test]
    fn a_retryable_error_carries_code_delay_and_details() {
        let e = StepError::retryable("busy").with_code("GATEWAY_BUSY").with_retry_after_ms(1500).with_details(json!({"a": 1}));
        assert_eq!(
            e.to_json(),
            json!({"kind": "retryable", "code": "GATEWAY_BUSY", "message": "busy", "retry_after_ms": 1500, "details": {"a": 1}})
        );
        assert_eq!(e.to_string(), "GATEWAY_BUSY: busy");
    }

    #[test]
    fn retry_after_is_not_sent_for_a_permanent_error() {
        let e = StepError::permanent("no").with_retry_after_ms(10);
        assert!(e.to_json().get("retry_after_ms").is_none());
    }
}
