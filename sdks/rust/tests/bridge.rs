//! The exec bridge as the runtime sees it: lines in, lines out.
use std::io::{self, BufRead, Read, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Duration;
use tasker_worker::{json, Outcome, StepContext, StepError, Value, Worker};

/// stdin for the worker: lines sent through a channel; dropping the sender is EOF.
struct ChanReader {
    rx: Receiver<String>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = {
            let available = self.fill_buf()?;
            let n = available.len().min(out.len());
            out[..n].copy_from_slice(&available[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChanReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(line) => {
                    self.buf = format!("{}\n", line).into_bytes();
                    self.pos = 0;
                }
                Err(_) => return Ok(&[]),
            }
        }
        Ok(&self.buf[self.pos..])
    }
    fn consume(&mut self, amt: usize) {
        self.pos += amt;
    }
}

/// stdout for the worker: each complete line goes to a channel.
struct ChanWriter {
    tx: Sender<Value>,
    pending: Vec<u8>,
}

impl Write for ChanWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(data);
        while let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            let v: Value = serde_json::from_slice(&line[..line.len() - 1]).expect("the worker writes JSON lines");
            let _ = self.tx.send(v);
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Bridge {
    to_worker: Option<Sender<String>>,
    from_worker: Receiver<Value>,
    done: Option<thread::JoinHandle<io::Result<()>>>,
}

impl Bridge {
    fn start(worker: Worker) -> Bridge {
        let (tx_in, rx_in) = mpsc::channel();
        let (tx_out, rx_out) = mpsc::channel();
        let done = thread::spawn(move || worker.serve(ChanReader { rx: rx_in, buf: Vec::new(), pos: 0 }, ChanWriter { tx: tx_out, pending: Vec::new() }));
        Bridge { to_worker: Some(tx_in), from_worker: rx_out, done: Some(done) }
    }
    fn send(&self, v: Value) {
        self.to_worker.as_ref().unwrap().send(v.to_string()).unwrap();
    }
    fn next(&self) -> Value {
        self.from_worker.recv_timeout(Duration::from_secs(5)).expect("a line from the worker")
    }
    fn close(mut self) {
        self.to_worker.take();
        self.done.take().unwrap().join().unwrap().unwrap();
    }
}

fn step(id: &str, callable: &str, input: Value) -> Value {
    json!({"type": "step", "id": id, "step": {
        "task_id": "tsk_1", "step_id": format!("stp_{}", id), "step_name": "validate_payment_eligibility",
        "namespace": "payments", "task_name": "process_refund", "task_version": "1.0.0", "correlation_id": "corr_1",
        "attempt": 1, "max_attempts": 3, "idempotency_key": format!("stp_{}:1", id),
        "handler": {"callable": callable, "method": null, "initialization": {"limit": 500}},
        "input": input, "dependency_results": {"earlier": {"ok": true}}
    }})
}

fn validate(context: &Value) -> Result<Value, String> {
    let amount = context.get("refund_amount").and_then(Value::as_f64).ok_or("Missing or invalid refund_amount")?;
    if amount <= 0.0 {
        return Err("Refund amount must be positive".to_string());
    }
    Ok(json!({"payment_validated": true, "refund_amount": amount}))
}

fn worker() -> Worker {
    Worker::new()
        .handler("validate", validate)
        .step_handler("context", |ctx: &StepContext| -> Result<Value, StepError> {
            Ok(json!({"attempt": ctx.attempt, "key": ctx.idempotency_key, "init": ctx.initialization, "earlier": ctx.dependency_result("earlier")}))
        })
        .step_handler("busy", |_: &StepContext| -> Result<Value, StepError> {
            Err(StepError::retryable("gateway busy").with_code("GATEWAY_BUSY").with_retry_after_ms(2000))
        })
        .step_handler("panics", |_: &StepContext| -> Result<Value, StepError> { panic!("boom") })
        .step_handler("slow", |ctx: &StepContext| -> Result<Value, StepError> {
            let ms = ctx.get_input("ms").and_then(Value::as_u64).unwrap_or(0);
            let mut waited = 0;
            while waited < ms && !ctx.is_cancelled() {
                thread::sleep(Duration::from_millis(10));
                waited += 10;
            }
            Ok(json!({"cancelled": ctx.is_cancelled()}))
        })
        .step_handler("delegate", |ctx: &StepContext| -> Result<Value, StepError> {
            let task = ctx.create_task("payments", "process_refund", json!({"payment_id": "pay_1", "refund_amount": 5}))?;
            Ok(json!({"payment_task_id": task["id"]}))
        })
        .step_handler("delegate_and_wait", |ctx: &StepContext| -> Result<Outcome, StepError> {
            let task = ctx.create_task("payments", "process_refund", json!({}))?;
            Ok(ctx.wait_for(task["id"].as_str().unwrap_or("")))
        })
}

#[test]
fn says_hello_with_its_handlers_sorted() {
    let b = Bridge::start(worker());
    assert_eq!(
        b.next(),
        json!({"type": "hello", "protocol": "tasker-exec/1", "handlers": ["busy", "context", "delegate", "delegate_and_wait", "panics", "slow", "validate"]})
    );
    b.close();
}

#[test]
fn a_plain_handler_gets_the_task_context_and_its_string_error_is_permanent() {
    let b = Bridge::start(worker());
    b.next();
    b.send(step("1", "validate", json!({"refund_amount": 49.99})));
    assert_eq!(b.next(), json!({"type": "result", "id": "1", "status": "success", "result": {"payment_validated": true, "refund_amount": 49.99}}));
    b.send(step("2", "validate", json!({"refund_amount": -5})));
    assert_eq!(
        b.next(),
        json!({"type": "result", "id": "2", "status": "failure", "error": {"kind": "permanent", "code": "PERMANENT_ERROR", "message": "Refund amount must be positive"}})
    );
    b.close();
}

#[test]
fn a_step_handler_reads_attempt_ids_initialization_and_dependencies() {
    let b = Bridge::start(worker());
    b.next();
    b.send(step("7", "context", json!({})));
    assert_eq!(b.next()["result"], json!({"attempt": 1, "key": "stp_7:1", "init": {"limit": 500}, "earlier": {"ok": true}}));
    b.close();
}

#[test]
fn retryable_errors_keep_code_and_retry_after_and_a_panic_is_retryable() {
    let b = Bridge::start(worker());
    b.next();
    b.send(step("1", "busy", json!({})));
    assert_eq!(b.next()["error"], json!({"kind": "retryable", "code": "GATEWAY_BUSY", "message": "gateway busy", "retry_after_ms": 2000}));
    b.send(step("2", "panics", json!({})));
    let r = b.next();
    assert_eq!(r["error"]["kind"], "retryable");
    assert_eq!(r["error"]["code"], "HANDLER_ERROR");
    assert_eq!(r["error"]["message"], "handler panicked: boom");
    b.close();
}

#[test]
fn an_unknown_callable_fails_with_handler_not_found_naming_the_handlers() {
    let b = Bridge::start(worker());
    b.next();
    b.send(step("1", "nope", json!({})));
    let r = b.next();
    assert_eq!(r["error"]["code"], "HANDLER_NOT_FOUND");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(message.contains("'nope'") && message.contains("'payments'") && message.contains("busy, context, delegate"), "{}", message);
    b.close();
}

#[test]
fn steps_run_concurrently_and_answers_carry_their_ids() {
    let b = Bridge::start(worker());
    b.next();
    b.send(step("slow", "slow", json!({"ms": 500})));
    b.send(step("fast", "validate", json!({"refund_amount": 1})));
    assert_eq!(b.next()["id"], "fast");
    assert_eq!(b.next()["id"], "slow");
    b.close();
}

#[test]
fn a_cancel_reaches_the_running_handler() {
    let b = Bridge::start(worker());
    b.next();
    b.send(step("1", "slow", json!({"ms": 5000})));
    thread::sleep(Duration::from_millis(50));
    b.send(json!({"type": "cancel", "id": "1", "reason": "HANDLER_TIMEOUT"}));
    assert_eq!(b.next()["result"], json!({"cancelled": true}));
    b.close();
}

#[test]
fn create_task_asks_the_runtime_and_waits_for_its_answer() {
    let b = Bridge::start(worker());
    b.next();
    b.send(step("9", "delegate", json!({})));
    let ask = b.next();
    assert_eq!(ask["type"], "create_task");
    assert_eq!(ask["id"], "9");
    assert_eq!(ask["request"], json!({"namespace": "payments", "name": "process_refund", "context": {"payment_id": "pay_1", "refund_amount": 5}}));
    b.send(json!({"type": "create_task_result", "request_id": ask["request_id"], "ok": true, "created": true, "task": {"id": "tsk_child"}}));
    assert_eq!(b.next()["result"], json!({"payment_task_id": "tsk_child"}));
    // A refusal comes back as a permanent error with the orchestrator's code.
    b.send(step("10", "delegate", json!({})));
    let ask = b.next();
    b.send(json!({"type": "create_task_result", "request_id": ask["request_id"], "ok": false, "error": {"code": "INVALID_CONTEXT", "message": "refund_amount: too small"}}));
    let r = b.next();
    assert_eq!(r["error"]["kind"], "permanent");
    assert_eq!(r["error"]["code"], "INVALID_CONTEXT");
    b.close();
}

#[test]
fn a_handler_waits_for_the_task_it_created() {
    let b = Bridge::start(worker());
    b.next();
    b.send(step("3", "delegate_and_wait", json!({})));
    let ask = b.next();
    b.send(json!({"type": "create_task_result", "request_id": ask["request_id"], "ok": true, "created": true, "task": {"id": "tsk_child"}}));
    assert_eq!(b.next(), json!({"type": "result", "id": "3", "status": "waiting", "wait_for": {"task_id": "tsk_child"}}));
    b.close();
}

#[test]
fn unknown_message_types_and_blank_lines_are_ignored_and_eof_waits_for_running_steps() {
    let b = Bridge::start(worker());
    b.next();
    b.send(json!({"type": "something_new", "x": 1}));
    b.to_worker.as_ref().unwrap().send(String::new()).unwrap();
    b.send(step("1", "slow", json!({"ms": 200})));
    let from = b.from_worker;
    let mut b2 = Bridge { to_worker: b.to_worker, from_worker: mpsc::channel().1, done: b.done };
    b2.to_worker.take(); // EOF while the step runs
    b2.done.take().unwrap().join().unwrap().unwrap();
    assert_eq!(from.recv_timeout(Duration::from_secs(1)).unwrap()["id"], "1");
}

#[test]
fn the_test_context_lets_handlers_be_unit_tested() {
    let ctx = StepContext::for_test(json!({"refund_amount": 10})).with_attempt(2).with_dependency("a", json!(1));
    assert_eq!(ctx.idempotency_key, "step_test:2");
    assert_eq!(ctx.dependency_result("a"), Some(&json!(1)));
    assert!(ctx.create_task("x", "y", json!({})).is_err());
}
