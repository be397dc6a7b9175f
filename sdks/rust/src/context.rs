use crate::error::StepError;
use crate::worker::Shared;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long [`StepContext::create_task`] waits for the runtime's answer.
const CREATE_TASK_TIMEOUT: Duration = Duration::from_secs(30);

/// What a step handler returns: a result, or "wait for this task" (see [`StepContext::wait_for`]).
/// A `Value` converts into `Outcome::Done`, so handlers returning `Result<Value, _>` need not name it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(Value),
    WaitFor(String),
}

impl From<Value> for Outcome {
    fn from(v: Value) -> Self {
        Outcome::Done(v)
    }
}

/// What a handler gets for one attempt of one step: the step message's fields.
#[derive(Debug)]
pub struct StepContext {
    pub task_id: String,
    pub step_id: String,
    pub step_name: String,
    pub namespace: String,
    pub task_name: String,
    pub task_version: String,
    /// The task's correlation id, carried to tasks created from this step.
    pub correlation_id: String,
    /// 1 for the first attempt.
    pub attempt: u64,
    pub max_attempts: u64,
    /// `<step_id>:<attempt>`: the same across redeliveries of this attempt. Use it for side effects.
    pub idempotency_key: String,
    /// The template's `handler.callable`.
    pub callable: String,
    /// The template's `handler.method`, if any.
    pub method: Option<String>,
    /// The template's `handler.initialization` (an object).
    pub initialization: Value,
    /// The task's context, its input (an object).
    pub input: Value,
    /// Results of every step this one depends on, directly or transitively, by step name (an object).
    pub dependency_results: Value,
    pub(crate) call_id: String,
    pub(crate) cancelled: Arc<AtomicBool>,
    pub(crate) shared: Option<Arc<Shared>>,
}

impl StepContext {
    /// One field of the task's context.
    pub fn get_input(&self, key: &str) -> Option<&Value> {
        self.input.get(key)
    }

    /// The result of a step this one depends on (directly or transitively), by step name.
    pub fn dependency_result(&self, step: &str) -> Option<&Value> {
        self.dependency_results.get(step)
    }

    /// True once the runtime asked to stop this step (its timeout passed, or the worker is
    /// shutting down past its grace period). Long handlers may check it and give up early.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Creates a task in any namespace (the mission's cross-namespace step), through the
    /// runtime: the new task records this task and step as its parent and carries this
    /// task's correlation id; its idempotency key holds no attempt, so a retried or
    /// redelivered step gets back the task it created before. Returns the task summary
    /// (`id`, `namespace`, `name`, `state`, ...). A refusal (unknown template, invalid
    /// context) comes back as a permanent error with the orchestrator's code.
    pub fn create_task(&self, namespace: &str, name: &str, context: Value) -> Result<Value, StepError> {
        let mut request = Map::new();
        request.insert("namespace".into(), json!(namespace));
        request.insert("name".into(), json!(name));
        request.insert("context".into(), context);
        self.create_task_with(Value::Object(request))
    }

    /// [`StepContext::create_task`] with the whole request: `namespace`, `name`, `context`,
    /// and optionally `version`, `idempotency_key`, `correlation_id`, `requested_by`.
    pub fn create_task_with(&self, request: Value) -> Result<Value, StepError> {
        let shared = match &self.shared {
            Some(s) => s,
            None => return Err(StepError::retryable("this context is not connected to a worker runtime").with_code("NOT_CONNECTED")),
        };
        let reply = shared.create_task(&self.call_id, request, CREATE_TASK_TIMEOUT)?;
        if reply.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(reply.get("task").cloned().unwrap_or(Value::Null));
        }
        let err = reply.get("error").cloned().unwrap_or(Value::Null);
        let code = err.get("code").and_then(Value::as_str).unwrap_or("INTERNAL").to_string();
        let message = err.get("message").and_then(Value::as_str).unwrap_or("task creation refused").to_string();
        // A broker or orchestrator hiccup may pass; a refusal of the request itself will not.
        let e = if code == "INTERNAL" { StepError::retryable(message) } else { StepError::permanent(message) };
        Err(e.with_code(code).with_details(err))
    }

    /// Makes the step wait for a task its handler created (`create_task`), without holding a
    /// worker: return `Ok(ctx.wait_for(&task_id))`. The orchestrator completes the step with
    /// that task's outcome (`{task_id, namespace, name, results}`, `results` holding its final
    /// steps' results by name), or fails it with CHILD_TASK_FAILED / CHILD_TASK_CANCELLED.
    pub fn wait_for(&self, task_id: &str) -> Outcome {
        Outcome::WaitFor(task_id.to_string())
    }

    /// Sends a log line to the runtime's logger, tagged with this step's ids.
    pub fn log(&self, level: &str, message: &str) {
        if let Some(s) = &self.shared {
            s.send(&json!({"type": "log", "level": level, "message": message, "id": self.call_id}));
        }
    }

    /// A context for unit tests of handlers: the given input, everything else empty or 1.
    /// `create_task` fails on it (no runtime).
    pub fn for_test(input: Value) -> StepContext {
        StepContext {
            task_id: "task_test".into(),
            step_id: "step_test".into(),
            step_name: "test_step".into(),
            namespace: "test".into(),
            task_name: "test_task".into(),
            task_version: "1.0.0".into(),
            correlation_id: "corr_test".into(),
            attempt: 1,
            max_attempts: 1,
            idempotency_key: "step_test:1".into(),
            callable: "test".into(),
            method: None,
            initialization: json!({}),
            input,
            dependency_results: json!({}),
            call_id: "0".into(),
            cancelled: Arc::new(AtomicBool::new(false)),
            shared: None,
        }
    }

    /// Builder for tests: sets a dependency's result.
    pub fn with_dependency(mut self, step: &str, result: Value) -> StepContext {
        if let Value::Object(m) = &mut self.dependency_results {
            m.insert(step.to_string(), result);
        }
        self
    }

    /// Builder for tests: sets the attempt (and the idempotency key with it).
    pub fn with_attempt(mut self, attempt: u64) -> StepContext {
        self.attempt = attempt;
        self.max_attempts = self.max_attempts.max(attempt);
        self.idempotency_key = format!("{}:{}", self.step_id, attempt);
        self
    }

    /// Builder for tests: sets the handler's initialization.
    pub fn with_initialization(mut self, initialization: Value) -> StepContext {
        self.initialization = initialization;
        self
    }

    pub(crate) fn from_step(call_id: String, step: &Value, cancelled: Arc<AtomicBool>, shared: Arc<Shared>) -> Result<StepContext, String> {
        let s = |k: &str| -> Result<String, String> {
            step.get(k).and_then(Value::as_str).map(str::to_string).ok_or_else(|| format!("step.{} is missing or not a string", k))
        };
        let n = |k: &str| -> Result<u64, String> { step.get(k).and_then(Value::as_u64).ok_or_else(|| format!("step.{} is missing or not a number", k)) };
        let obj = |v: Option<&Value>| -> Value {
            match v {
                Some(Value::Object(m)) => Value::Object(m.clone()),
                _ => json!({}),
            }
        };
        let handler = step.get("handler").ok_or("step.handler is missing")?;
        Ok(StepContext {
            task_id: s("task_id")?,
            step_id: s("step_id")?,
            step_name: s("step_name")?,
            namespace: s("namespace")?,
            task_name: s("task_name").unwrap_or_default(),
            task_version: s("task_version").unwrap_or_default(),
            correlation_id: s("correlation_id").unwrap_or_default(),
            attempt: n("attempt")?,
            max_attempts: n("max_attempts")?,
            idempotency_key: s("idempotency_key")?,
            callable: handler.get("callable").and_then(Value::as_str).ok_or("step.handler.callable is missing")?.to_string(),
            method: handler.get("method").and_then(Value::as_str).map(str::to_string),
            initialization: obj(handler.get("initialization")),
            input: obj(step.get("input")),
            dependency_results: obj(step.get("dependency_results")),
            call_id,
            cancelled,
            shared: Some(shared),
        })
    }
}
