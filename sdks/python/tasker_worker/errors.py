"""Errors a handler raises to steer the engine, and how any raised value becomes the
``error`` of a step result (the same rules as the TypeScript SDK's ``toStepError``)."""
from __future__ import annotations

import json
import re
from typing import Any, Optional

#: Code of a PermanentError that sets none.
PERMANENT_ERROR = "PERMANENT_ERROR"
#: Code of a RetryableError that sets none.
RETRYABLE_ERROR = "RETRYABLE_ERROR"
#: Anything else a handler raises: retryable under the step's policy.
HANDLER_ERROR = "HANDLER_ERROR"

#: Codes a handler may set: upper snake case, up to 64 characters.
HANDLER_ERROR_CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
MAX_ERROR_MESSAGE_CHARS = 8 * 1024
MAX_ERROR_DETAILS_BYTES = 64 * 1024


class PermanentError(Exception):
    """Raised by a handler: the step fails now, whatever attempts are left.

    >>> raise PermanentError("Refund amount must be positive", code="INVALID_AMOUNT")
    """

    def __init__(self, message: str, code: str = PERMANENT_ERROR, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details


class RetryableError(Exception):
    """Raised by a handler: this attempt failed; the step is retried while attempts remain,
    after ``retry_after_ms`` if given (capped by the step's policy), else the policy's backoff."""

    def __init__(self, message: str, code: str = RETRYABLE_ERROR, retry_after_ms: Optional[float] = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retry_after_ms = retry_after_ms
        self.details = details


class TaskRequestError(Exception):
    """``ctx.create_task`` was refused (``code`` as the orchestrator sent it, e.g.
    ``INVALID_CONTEXT``, with ``issues`` naming each failing field) or got no answer
    (``INTERNAL``). Uncaught in a handler, it is a retryable failure like any other error."""

    def __init__(self, code: str, message: str, issues: Optional[list] = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.issues = issues or []


def to_step_error(raised: BaseException) -> tuple[dict, list[str]]:
    """The ``error`` object for what a handler raised, and notes on what had to be adjusted."""
    notes: list[str] = []
    if isinstance(raised, (PermanentError, RetryableError)):
        kind = "permanent" if isinstance(raised, PermanentError) else "retryable"
        fallback = PERMANENT_ERROR if kind == "permanent" else RETRYABLE_ERROR
        code = raised.code
        if not isinstance(code, str) or not HANDLER_ERROR_CODE_PATTERN.match(code):
            notes.append(f"code {code!r} is not upper snake case (<= 64 characters); sent as {fallback}")
            code = fallback
        error: dict = {"kind": kind, "code": code, "message": _message(raised.message, notes)}
        if kind == "retryable":
            error["retry_after_ms"] = _retry_after(raised.retry_after_ms, notes)  # type: ignore[union-attr]
        details = _details(raised.details, notes)
        if details is not None:
            error["details"] = details
        return error, notes
    return {"kind": "retryable", "code": HANDLER_ERROR, "message": _message(_describe(raised), notes)}, notes


def _describe(e: BaseException) -> str:
    # A plain Exception keeps its message alone, as the TypeScript SDK does for a plain Error.
    return str(e) if type(e) is Exception else f"{type(e).__name__}: {e}"


def _message(text: Any, notes: list[str]) -> str:
    text = text if isinstance(text, str) else str(text)
    if len(text) <= MAX_ERROR_MESSAGE_CHARS:
        return text
    notes.append(f"message of {len(text)} characters cut to {MAX_ERROR_MESSAGE_CHARS}")
    return text[:MAX_ERROR_MESSAGE_CHARS] + "…"


def _retry_after(ms: Any, notes: list[str]) -> Optional[int]:
    if ms is None:
        return None
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms != ms or ms < 0 or ms == float("inf"):
        notes.append(f"retry_after_ms {ms!r} is not a non-negative number; ignored")
        return None
    return int(round(ms))


def _details(details: Any, notes: list[str]) -> Any:
    if details is None:
        return None
    try:
        text = json.dumps(details, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        notes.append(f"details dropped: not JSON-serializable ({e})")
        return None
    if len(text.encode("utf-8", "surrogatepass")) > MAX_ERROR_DETAILS_BYTES:
        notes.append(f"details dropped: more than {MAX_ERROR_DETAILS_BYTES} bytes")
        return None
    return json.loads(text)
