use crate::context::{Outcome, StepContext};
use crate::error::{StepError, HANDLER_ERROR};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The exec bridge protocol this crate speaks (docs/protocol.md, "Exec bridge").
pub const EXEC_PROTOCOL: &str = "tasker-exec/1";

type BoxedHandler = Arc<dyn Fn(&StepContext) -> Result<Outcome, StepError> + Send + Sync>;

/// The write side of the bridge and the create-task requests waiting for their answer,
/// shared by the reading loop and the handler threads.
pub(crate) struct Shared {
    out: Mutex<Box<dyn Write + Send>>,
    creates: Mutex<HashMap<String, mpsc::Sender<Value>>>,
    next_request: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Shared {
    /// Writes one message as one line. A runtime that went away makes writes fail: ignored,
    /// since nobody is left to answer.
    pub(crate) fn send(&self, message: &Value) {
        let line = match serde_json::to_string(message) {
            Ok(l) => l,
            Err(_) => return,
        };
        let mut out = match self.out.lock() {
            Ok(o) => o,
            Err(poisoned) => poisoned.into_inner(),
        };
        let _ = out.write_all(line.as_bytes());
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }

    pub(crate) fn create_task(&self, call_id: &str, request: Value, timeout: Duration) -> Result<Value, StepError> {
        let request_id = format!("r{}", self.next_request.fetch_add(1, Ordering::SeqCst) + 1);
        let (tx, rx) = mpsc::channel();
        self.creates.lock().unwrap_or_else(|p| p.into_inner()).insert(request_id.clone(), tx);
        self.send(&json!({"type": "create_task", "id": call_id, "request_id": request_id, "request": request}));
        match rx.recv_timeout(timeout) {
            Ok(reply) => Ok(reply),
            Err(_) => {
                self.creates.lock().unwrap_or_else(|p| p.into_inner()).remove(&request_id);
                Err(StepError::retryable(format!("no answer to create_task within {} s", timeout.as_secs())).with_code("CREATE_TASK_TIMEOUT"))
            }
        }
    }

    fn answer_create(&self, reply: Value) {
        let id = reply.get("request_id").and_then(Value::as_str).unwrap_or("").to_string();
        let waiting = self.creates.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        if let Some(tx) = waiting {
            let _ = tx.send(reply);
        }
    }
}

/// The handlers of one namespace, by `handler.callable`, and the loop that serves them
/// over the exec bridge.
#[derive(Default)]
pub struct Worker {
    handlers: BTreeMap<String, BoxedHandler>,
}

impl Worker {
    pub fn new() -> Self {
        Worker { handlers: BTreeMap::new() }
    }

    /// Registers a plain handler, the mission's form: it gets the task's context (its input)
    /// and returns the step's result. `Err(String)` (or anything `Into<StepError>`) fails the
    /// step; a plain string is a permanent failure.
    pub fn handler<F, O, E>(self, callable: &str, f: F) -> Self
    where
        F: Fn(&Value) -> Result<O, E> + Send + Sync + 'static,
        O: Into<Outcome>,
        E: Into<StepError>,
    {
        self.step_handler(callable, move |ctx: &StepContext| f(&ctx.input))
    }

    /// Registers a handler that gets the whole [`StepContext`]: input, dependency results,
    /// initialization, attempt, ids, `create_task` and `wait_for`. It returns a `Value` (the
    /// result) or an [`Outcome`] (`ctx.wait_for(task_id)` to wait for a task it created).
    pub fn step_handler<F, O, E>(mut self, callable: &str, f: F) -> Self
    where
        F: Fn(&StepContext) -> Result<O, E> + Send + Sync + 'static,
        O: Into<Outcome>,
        E: Into<StepError>,
    {
        self.handlers.insert(callable.to_string(), Arc::new(move |ctx: &StepContext| f(ctx).map(Into::into).map_err(Into::into)));
        self
    }

    /// The registered callables, sorted.
    pub fn callables(&self) -> Vec<String> {
        self.handlers.keys().cloned().collect()
    }

    /// Serves the bridge on stdin and stdout until stdin ends (the runtime closes it at
    /// shutdown, or died). Log to stderr: stdout belongs to the protocol.
    pub fn run(self) -> io::Result<()> {
        let stdin = io::stdin();
        let input = stdin.lock();
        self.serve(input, io::stdout())
    }

    /// Serves the bridge on any reader and writer: says hello, runs each step on a thread of
    /// its own (so a slow step never holds the others), answers by id, and returns once the
    /// input ends and every running step has answered.
    pub fn serve<R: BufRead, W: Write + Send + 'static>(self, input: R, output: W) -> io::Result<()> {
        let shared = Arc::new(Shared { out: Mutex::new(Box::new(output)), creates: Mutex::new(HashMap::new()), next_request: AtomicU64::new(0) });
        let handlers = Arc::new(self.handlers);
        let names: Vec<&String> = handlers.keys().collect();
        shared.send(&json!({"type": "hello", "protocol": EXEC_PROTOCOL, "handlers": names}));
        let running: Arc<Mutex<HashMap<String, Arc<AtomicBool>>>> = Arc::new(Mutex::new(HashMap::new()));
        let mut threads: Vec<JoinHandle<()>> = Vec::new();

        for line in input.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let message: Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("tasker-worker: ignoring a line that is not JSON: {}", e);
                    continue;
                }
            };
            match message.get("type").and_then(Value::as_str).unwrap_or("") {
                "step" => {
                    let id = message.get("id").and_then(Value::as_str).unwrap_or("").to_string();
                    let step = message.get("step").cloned().unwrap_or(Value::Null);
                    let cancelled = Arc::new(AtomicBool::new(false));
                    running.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), cancelled.clone());
                    let (handlers, shared, running) = (handlers.clone(), shared.clone(), running.clone());
                    threads.retain(|t| !t.is_finished());
                    threads.push(thread::spawn(move || {
                        let reply = run_step(&handlers, &id, &step, cancelled, shared.clone());
                        running.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                        shared.send(&reply);
                    }));
                }
                "cancel" => {
                    let id = message.get("id").and_then(Value::as_str).unwrap_or("");
                    if let Some(flag) = running.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
                        flag.store(true, Ordering::SeqCst);
                    }
                }
                "create_task_result" => shared.answer_create(message),
                // Unknown types are ignored: the protocol grows by adding them.
                _ => {}
            }
        }
        for t in threads {
            let _ = t.join();
        }
        Ok(())
    }
}

fn run_step(handlers: &BTreeMap<String, BoxedHandler>, id: &str, step: &Value, cancelled: Arc<AtomicBool>, shared: Arc<Shared>) -> Value {
    let failure = |e: StepError| json!({"type": "result", "id": id, "status": "failure", "error": e.to_json()});
    let ctx = match StepContext::from_step(id.to_string(), step, cancelled, shared) {
        Ok(c) => c,
        Err(problem) => return failure(StepError::permanent(format!("step message not understood: {}", problem)).with_code("INVALID_MESSAGE")),
    };
    let handler = match handlers.get(&ctx.callable) {
        Some(h) => h,
        None => {
            let available: Vec<&str> = handlers.keys().map(String::as_str).collect();
            return failure(
                StepError::permanent(format!(
                    "no handler for callable '{}' (step {}) in namespace '{}'; this worker has: {}",
                    ctx.callable,
                    ctx.step_name,
                    ctx.namespace,
                    if available.is_empty() { "(none)".to_string() } else { available.join(", ") }
                ))
                .with_code("HANDLER_NOT_FOUND"),
            );
        }
    };
    match panic::catch_unwind(AssertUnwindSafe(|| handler(&ctx))) {
        Ok(Ok(Outcome::Done(result))) => json!({"type": "result", "id": id, "status": "success", "result": result}),
        Ok(Ok(Outcome::WaitFor(task_id))) => json!({"type": "result", "id": id, "status": "waiting", "wait_for": {"task_id": task_id}}),
        Ok(Err(e)) => failure(e),
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_string());
            // Like any unexpected failure in the other SDKs: retryable under the step's policy.
            failure(StepError::retryable(format!("handler panicked: {}", text)).with_code(HANDLER_ERROR))
        }
    }
}
