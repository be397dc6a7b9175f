"""The wire format (docs/protocol.md): names, step message checks, step results."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

PROTOCOL_VERSION = 1
SUPPORTED_PROTOCOL_VERSIONS = (1,)
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Step messages in one ``steps`` message (Limits.maxStepsPerMessage).
MAX_STEPS_PER_MESSAGE = 100
MAX_RESULT_BYTES = 1024 * 1024
DEFAULT_PREFIX = "tasker"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672"

NAMESPACE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")

# Error codes of the protocol that this SDK sends (packages/protocol/src/errors.ts).
INVALID_MESSAGE = "INVALID_MESSAGE"
UNSUPPORTED_PROTOCOL_VERSION = "UNSUPPORTED_PROTOCOL_VERSION"
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
HANDLER_NOT_FOUND = "HANDLER_NOT_FOUND"
HANDLER_TIMEOUT = "HANDLER_TIMEOUT"
INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class Names:
    """Exchange and queue names under a prefix (``TASKER_AMQP_PREFIX``)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not PREFIX_PATTERN.match(self.prefix):
            raise ValueError(f"AMQP prefix {self.prefix!r} is not valid: use lower-case words separated by dots")

    @property
    def steps_exchange(self) -> str:
        return f"{self.prefix}.steps"

    def step_queue(self, namespace: str) -> str:
        return f"{self.prefix}.steps.{namespace}"

    @property
    def results_exchange(self) -> str:
        return f"{self.prefix}.results"

    @property
    def task_requests_exchange(self) -> str:
        return f"{self.prefix}.task_requests"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def control_exchange(self) -> str:
        return f"{self.prefix}.control"


def parked_routing_key(namespace: str) -> str:
    return f"invalid.step.{namespace}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Refused(Exception):
    """A step message this worker cannot run: parked with this code and reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_object(body: bytes, what: str) -> dict:
    """Size, then JSON, then "an object": the checks before any field is read."""
    if len(body) > MAX_MESSAGE_BYTES:
        raise Refused(PAYLOAD_TOO_LARGE, f"{what} is {len(body)} bytes; the limit is {MAX_MESSAGE_BYTES} bytes")
    try:
        raw = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Refused(INVALID_MESSAGE, f"{what} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise Refused(INVALID_MESSAGE, f"{what} must be a JSON object")
    return raw


def _check_version(raw: dict, what: str) -> None:
    version = raw.get("protocol_version")
    if _is_int(version) or isinstance(version, float):
        if version not in SUPPORTED_PROTOCOL_VERSIONS:
            raise Refused(
                UNSUPPORTED_PROTOCOL_VERSION,
                f"{what} has protocol_version {version}; supported: {', '.join(map(str, SUPPORTED_PROTOCOL_VERSIONS))}",
            )


def decode_step_message(body: bytes) -> dict:
    """Size, JSON, protocol version, fields, in that order (as the TypeScript runtime).
    Raises Refused with the code to park the message under."""
    return check_step_message(_parse_object(body, "step message"), "step message")


def check_step_message(raw: Any, what: str = "step message") -> dict:
    """The checks of a parsed step message: an object, protocol version, fields. ``what``
    names it in the reason. Raises Refused."""
    if not isinstance(raw, dict):
        raise Refused(INVALID_MESSAGE, f"{what} must be a JSON object")
    _check_version(raw, what)
    problems: list[str] = []

    def need(field: str, ok: bool, rule: str) -> None:
        if not ok:
            problems.append(f"{field}: {rule}")

    g = raw.get
    need("protocol_version", g("protocol_version") == PROTOCOL_VERSION and _is_int(g("protocol_version")), f"must be {PROTOCOL_VERSION}")
    need("message_type", g("message_type") == "step", "must be 'step'")
    for f in ("task_id", "step_id"):
        v = g(f)
        need(f, isinstance(v, str) and 1 <= len(v) <= 64, "must be a string of 1 to 64 characters")
    need("namespace", isinstance(g("namespace"), str) and bool(NAMESPACE_PATTERN.match(g("namespace"))), "must be lower snake case")
    for f in ("task_name", "step_name"):
        need(f, isinstance(g(f), str) and bool(IDENTIFIER_PATTERN.match(g(f))), "must be an identifier")
    for f in ("task_version", "correlation_id", "idempotency_key", "dispatched_at"):
        need(f, isinstance(g(f), str), "must be a string")
    for f in ("attempt", "max_attempts"):
        need(f, _is_int(g(f)) and g(f) >= 1, "must be an integer >= 1")
    t = g("timeout_ms", "missing")
    need("timeout_ms", t is None or (_is_int(t) and t > 0), "must be a positive integer or null")
    h = g("handler")
    if isinstance(h, dict):
        need("handler.callable", isinstance(h.get("callable"), str) and h.get("callable") != "", "must be a non-empty string")
        need("handler.method", h.get("method") is None or isinstance(h.get("method"), str), "must be a string or null")
        need("handler.initialization", isinstance(h.get("initialization"), dict), "must be an object")
    else:
        need("handler", False, "must be an object")
    for f in ("input", "dependency_results"):
        need(f, isinstance(g(f), dict), "must be an object")
    if problems:
        raise Refused(INVALID_MESSAGE, f"{what} does not match its schema: {'; '.join(problems)}")
    return raw


@dataclass(frozen=True)
class StepPart:
    """One step of a delivery: its checked ``message``, or why it is ``refused``. ``what``
    names it in reasons (``step message``, or ``step message 2 of 3 in a steps message``).
    ``in_steps``: it came in a ``steps`` message, and is parked alone, as ``body``."""

    what: str
    message: Optional[dict] = None
    refused: Optional[Refused] = None
    in_steps: bool = False
    item: Any = None

    @property
    def body(self) -> bytes:
        """Its own JSON (one step of a ``steps`` message, parked alone)."""
        return json.dumps(self.item, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_step_messages(body: bytes) -> list[StepPart]:
    """One step message, or several in a ``steps`` message (docs/protocol.md, section 3).
    Raises Refused when the whole message is to be parked: a lone step message that fails its
    checks, or a ``steps`` message whose envelope is broken (not an array, empty, more than
    ``MAX_STEPS_PER_MESSAGE``, an unknown protocol version). Otherwise each step of a
    ``steps`` message is checked on its own: a bad one comes back refused, its siblings
    decoded."""
    raw = _parse_object(body, "step message")
    if raw.get("message_type") != "steps":
        return [StepPart("step message", check_step_message(raw))]
    envelope = "steps message"
    _check_version(raw, envelope)
    if "protocol_version" not in raw:
        raise Refused(INVALID_MESSAGE, f"{envelope} has no protocol_version")
    items = raw.get("steps")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_STEPS_PER_MESSAGE:
        has = f"; it has {len(items)}" if isinstance(items, list) else ""
        raise Refused(INVALID_MESSAGE, f"{envelope}: steps must be an array of 1 to {MAX_STEPS_PER_MESSAGE} step messages{has}")
    parts = []
    for i, item in enumerate(items):
        what = f"step message {i + 1} of {len(items)} in a {envelope}"
        try:
            parts.append(StepPart(what, check_step_message(item, what), in_steps=True, item=item))
        except Refused as r:
            parts.append(StepPart(what, refused=r, in_steps=True, item=item))
    return parts


def step_result(message: dict, *, started_at: str, worker_id: str, delivery_count: Optional[int], outcome: dict) -> dict:
    """A StepResult for one attempt: ``outcome`` is {"status": "success", "result": ...} or
    {"status": "failure", "error": {...}}."""
    r = {
        "protocol_version": PROTOCOL_VERSION,
        "message_type": "step_result",
        "task_id": message["task_id"],
        "step_id": message["step_id"],
        "namespace": message["namespace"],
        "step_name": message["step_name"],
        "attempt": message["attempt"],
        "started_at": started_at,
        "finished_at": now_iso(),
        "worker_id": worker_id[:200],
    }
    if delivery_count:
        r["delivery_count"] = delivery_count
    r.update(outcome)
    return r


def encode_result(value: Any) -> tuple[Optional[dict], Optional[dict]]:
    """The success outcome for a returned value, or a permanent failure when it cannot travel."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError, UnicodeEncodeError) as e:
        return None, {"kind": "permanent", "code": INVALID_MESSAGE, "message": f"the handler's result is not JSON-serializable: {e}"}
    if size > MAX_RESULT_BYTES:
        return None, {
            "kind": "permanent",
            "code": PAYLOAD_TOO_LARGE,
            "message": f"the handler's result is {size} bytes as JSON; the limit is {MAX_RESULT_BYTES} bytes",
        }
    return {"status": "success", "result": json.loads(text)}, None


def dumps(message: dict) -> bytes:
    return json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
