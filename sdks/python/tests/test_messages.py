"""Pure parts: message checks, result building, error mapping, the context."""
import json
import threading
import unittest

from tasker_worker import PermanentError, RetryableError, StepContext, TaskRequestError
from tasker_worker.errors import to_step_error
from tasker_worker.messages import Names, Refused, decode_step_message, decode_step_messages, encode_result, step_result


def step_message(**over):
    m = {
        "protocol_version": 1,
        "message_type": "step",
        "task_id": "tsk_1",
        "namespace": "payments",
        "task_name": "process_refund",
        "task_version": "1.0.0",
        "correlation_id": "corr_1",
        "step_id": "stp_1",
        "step_name": "validate_payment_eligibility",
        "attempt": 1,
        "max_attempts": 3,
        "timeout_ms": None,
        "handler": {"callable": "validate", "method": None, "initialization": {"limit": 500}},
        "input": {"refund_amount": 49.99},
        "dependency_results": {"earlier": {"ok": True}},
        "idempotency_key": "stp_1:1",
        "dispatched_at": "2026-11-26T14:00:00.000Z",
    }
    m.update(over)
    return m


class DecodeTest(unittest.TestCase):
    def test_a_valid_step_message_decodes(self):
        self.assertEqual(decode_step_message(json.dumps(step_message()).encode())["step_id"], "stp_1")

    def test_not_json_is_invalid_message(self):
        with self.assertRaises(Refused) as cm:
            decode_step_message(b"{nope")
        self.assertEqual(cm.exception.code, "INVALID_MESSAGE")

    def test_an_unknown_protocol_version_is_refused_before_the_fields_are_checked(self):
        with self.assertRaises(Refused) as cm:
            decode_step_message(json.dumps({"protocol_version": 2}).encode())
        self.assertEqual(cm.exception.code, "UNSUPPORTED_PROTOCOL_VERSION")

    def test_every_failing_field_is_named(self):
        with self.assertRaises(Refused) as cm:
            decode_step_message(json.dumps(step_message(attempt=0, input=[], handler={"callable": ""})).encode())
        for field in ("attempt", "input", "handler.callable", "handler.initialization"):
            self.assertIn(field, cm.exception.reason)

    def test_booleans_are_not_numbers(self):
        with self.assertRaises(Refused):
            decode_step_message(json.dumps(step_message(attempt=True)).encode())

    def test_too_large_is_payload_too_large(self):
        with self.assertRaises(Refused) as cm:
            decode_step_message(b" " * (4 * 1024 * 1024 + 1))
        self.assertEqual(cm.exception.code, "PAYLOAD_TOO_LARGE")


def steps_message(steps, **over):
    m = {"protocol_version": 1, "message_type": "steps", "steps": steps}
    m.update(over)
    return m


class StepsMessageTest(unittest.TestCase):
    """Several step messages in one ``steps`` message (docs/protocol.md, section 3)."""

    def test_a_steps_message_decodes_into_its_step_messages(self):
        steps = [step_message(step_id=f"stp_{i}") for i in range(3)]
        parts = decode_step_messages(json.dumps(steps_message(steps)).encode())
        self.assertEqual([p.message["step_id"] for p in parts], ["stp_0", "stp_1", "stp_2"])
        self.assertEqual([p.refused for p in parts], [None, None, None])
        self.assertTrue(all(p.in_steps for p in parts))
        self.assertEqual(parts[1].what, "step message 2 of 3 in a steps message")

    def test_a_lone_step_message_is_one_part_and_refused_whole_when_bad(self):
        (part,) = decode_step_messages(json.dumps(step_message()).encode())
        self.assertEqual((part.message["step_id"], part.in_steps, part.what), ("stp_1", False, "step message"))
        with self.assertRaises(Refused) as cm:
            decode_step_messages(json.dumps(step_message(step_id=None)).encode())
        self.assertTrue(cm.exception.reason.startswith("step message does not match its schema: step_id"), cm.exception.reason)

    def test_a_broken_envelope_refuses_the_whole_message_naming_the_problem(self):
        cases = [
            ("not an array", steps_message({"a": 1}), "INVALID_MESSAGE", "steps message: steps must be an array of 1 to 100 step messages"),
            ("no steps", {"protocol_version": 1, "message_type": "steps"}, "INVALID_MESSAGE", "steps message: steps must be an array of 1 to 100 step messages"),
            ("empty", steps_message([]), "INVALID_MESSAGE", "steps message: steps must be an array of 1 to 100 step messages; it has 0"),
            ("101 steps", steps_message([step_message()] * 101), "INVALID_MESSAGE", "steps message: steps must be an array of 1 to 100 step messages; it has 101"),
            ("unknown version", steps_message([step_message()], protocol_version=2), "UNSUPPORTED_PROTOCOL_VERSION", "steps message has protocol_version 2; supported: 1"),
            ("no version", {"message_type": "steps", "steps": [step_message()]}, "INVALID_MESSAGE", "steps message has no protocol_version"),
        ]
        for name, message, code, reason in cases:
            with self.subTest(name), self.assertRaises(Refused) as cm:
                decode_step_messages(json.dumps(message).encode())
            self.assertEqual((cm.exception.code, cm.exception.reason), (code, reason))

    def test_one_bad_step_is_refused_alone_naming_its_place_and_its_siblings_decode(self):
        bad = step_message(step_id="stp_bad")
        del bad["handler"]
        steps = [step_message(step_id="stp_a"), bad, step_message(step_id="stp_c")]
        parts = decode_step_messages(json.dumps(steps_message(steps)).encode())
        self.assertEqual([p.message and p.message["step_id"] for p in parts], ["stp_a", None, "stp_c"])
        self.assertEqual((parts[0].refused, parts[2].refused), (None, None))
        refused = parts[1].refused
        self.assertEqual(refused.code, "INVALID_MESSAGE")
        self.assertEqual(refused.reason, "step message 2 of 3 in a steps message does not match its schema: handler: must be an object")
        self.assertEqual(json.loads(parts[1].body), bad)

    def test_a_step_that_is_not_an_object_or_of_another_version_is_refused_alone(self):
        parts = decode_step_messages(json.dumps(steps_message([step_message(), "nope", step_message(protocol_version=9)])).encode())
        self.assertIsNotNone(parts[0].message)
        self.assertEqual((parts[1].refused.code, parts[1].refused.reason), ("INVALID_MESSAGE", "step message 2 of 3 in a steps message must be a JSON object"))
        self.assertEqual(parts[1].body, b'"nope"')
        self.assertEqual(parts[2].refused.code, "UNSUPPORTED_PROTOCOL_VERSION")
        self.assertTrue(parts[2].refused.reason.startswith("step message 3 of 3 in a steps message has protocol_version 9"))


class ResultTest(unittest.TestCase):
    def test_a_result_echoes_the_ids_and_carries_the_outcome(self):
        r = step_result(step_message(attempt=2), started_at="2026-11-26T14:00:00.000Z", worker_id="w", delivery_count=2, outcome={"status": "success", "result": 1})
        self.assertEqual(r["attempt"], 2)
        self.assertEqual(r["delivery_count"], 2)
        self.assertEqual(r["message_type"], "step_result")
        self.assertTrue(r["finished_at"].endswith("Z"))

    def test_unserializable_and_oversized_results_fail_permanently(self):
        self.assertEqual(encode_result({"x": object()})[1]["code"], "INVALID_MESSAGE")
        self.assertEqual(encode_result(float("nan"))[1]["code"], "INVALID_MESSAGE")
        self.assertEqual(encode_result("x" * (1024 * 1024 + 1))[1]["code"], "PAYLOAD_TOO_LARGE")
        self.assertEqual(encode_result(None)[0], {"status": "success", "result": None})

    def test_names_follow_the_prefix(self):
        n = Names("t.abc")
        self.assertEqual(n.step_queue("payments"), "t.abc.steps.payments")
        self.assertEqual(n.results_exchange, "t.abc.results")
        with self.assertRaises(ValueError):
            Names("Bad Prefix")


class ErrorMappingTest(unittest.TestCase):
    def test_permanent_keeps_code_and_details(self):
        e, notes = to_step_error(PermanentError("no", code="INVALID_AMOUNT", details={"amount": -1}))
        self.assertEqual(e, {"kind": "permanent", "code": "INVALID_AMOUNT", "message": "no", "details": {"amount": -1}})
        self.assertEqual(notes, [])

    def test_retryable_keeps_retry_after(self):
        e, _ = to_step_error(RetryableError("busy", code="GATEWAY_BUSY", retry_after_ms=1500.4))
        self.assertEqual(e, {"kind": "retryable", "code": "GATEWAY_BUSY", "message": "busy", "retry_after_ms": 1500})

    def test_a_bad_code_falls_back_and_says_so(self):
        e, notes = to_step_error(PermanentError("no", code="lower case"))
        self.assertEqual(e["code"], "PERMANENT_ERROR")
        self.assertTrue(notes)

    def test_anything_else_is_a_retryable_handler_error(self):
        e, _ = to_step_error(KeyError("payment_id"))
        self.assertEqual(e, {"kind": "retryable", "code": "HANDLER_ERROR", "message": "KeyError: 'payment_id'"})
        e, _ = to_step_error(Exception("plain"))
        self.assertEqual(e["message"], "plain")


class ContextTest(unittest.TestCase):
    def test_the_context_exposes_the_step(self):
        ctx = StepContext(step_message())
        self.assertEqual(ctx.get_input("refund_amount"), 49.99)
        self.assertEqual(ctx.get_input("missing", "d"), "d")
        self.assertEqual(ctx.get_dependency_result("earlier"), {"ok": True})
        self.assertEqual(ctx.initialization, {"limit": 500})
        self.assertEqual((ctx.attempt, ctx.max_attempts, ctx.idempotency_key), (1, 3, "stp_1:1"))
        self.assertFalse(ctx.cancelled)

    def test_cancellation_wakes_sleep(self):
        ev = threading.Event()
        ctx = StepContext(step_message(), cancel_event=ev)
        threading.Timer(0.05, ev.set).start()
        self.assertFalse(ctx.sleep(5))
        self.assertTrue(ctx.cancelled)

    def test_create_task_builds_the_documented_request(self):
        sent = []

        def request_task(req, timeout):
            sent.append(req)
            return {"ok": True, "created": True, "task": {"id": "tsk_child"}}

        ctx = StepContext(step_message(), request_task=request_task)
        out = ctx.create_task("payments", "process_refund", {"payment_id": "p"})
        self.assertEqual(out, {"created": True, "task": {"id": "tsk_child"}})
        self.assertEqual(
            sent[0],
            {
                "protocol_version": 1,
                "message_type": "task_request",
                "namespace": "payments",
                "name": "process_refund",
                "context": {"payment_id": "p"},
                "idempotency_key": "stp_1:payments.process_refund:1",
                "parent": {"task_id": "tsk_1", "step_id": "stp_1"},
                "correlation_id": "corr_1",
            },
        )
        ctx.create_task("payments", "process_refund", {})
        self.assertEqual(sent[1]["idempotency_key"], "stp_1:payments.process_refund:2")

    def test_create_task_refusals_raise_with_the_code(self):
        ctx = StepContext(step_message(), request_task=lambda r, t: {"ok": False, "error": {"code": "INVALID_CONTEXT", "message": "bad", "issues": [{"path": "x", "message": "y"}]}})
        with self.assertRaises(TaskRequestError) as cm:
            ctx.create_task("payments", "process_refund", {})
        self.assertEqual(cm.exception.code, "INVALID_CONTEXT")
        self.assertEqual(cm.exception.issues, [{"path": "x", "message": "y"}])
        with self.assertRaises(TaskRequestError) as cm:
            ctx.create_task("Bad NS", "process_refund", {})
        self.assertEqual(cm.exception.code, "INVALID_MESSAGE")


if __name__ == "__main__":
    unittest.main()
