/**
 * What a conformance worker must provide: the handler callables the kit's templates name,
 * and what each one does. Every SDK ships a worker with exactly these handlers (and no
 * handler named {@link MISSING_CALLABLE}). The same text is in this package's README.
 */
export const CONFORMANCE_HANDLERS = {
  /** Returns `{"ok": true, "value": input.value}`. */
  conformance_succeed: 'returns {"ok": true, "value": <input.value>}',
  /** Raises the SDK's permanent error with code CONFORMANCE_PERMANENT and details {"reason": "conformance"}. */
  conformance_fail_permanent:
    'raises a permanent error: code "CONFORMANCE_PERMANENT", message "permanent failure requested", details {"reason": "conformance"}',
  /** Attempt 1: the SDK's retryable error with code CONFORMANCE_RETRY and retry-after input.retry_after_ms; later attempts return {"attempt": n}. */
  conformance_fail_retryable:
    'attempt 1: raises a retryable error, code "CONFORMANCE_RETRY", retry-after <input.retry_after_ms> ms; later attempts return {"attempt": <attempt>}',
  /** Returns `{"token": input.token, "n": 42}`. */
  conformance_produce: 'returns {"token": <input.token>, "n": 42}',
  /** Returns what it read: the input, the result of step `produce`, and its own ids. */
  conformance_consume:
    'returns {"input_token": <input.token>, "produced": <result of step "produce", or null>, "task_id", "step_id", "step_name", "namespace", "task_name", "attempt", "max_attempts", "idempotency_key"} (all from its context)',
  /** Returns `{"initialization": <the handler's initialization config>}`. */
  conformance_initialization: 'returns {"initialization": <handler initialization config, as given>}',
  /** Returns a string of input.size characters: character i is the digit i mod 10. */
  conformance_large: 'returns {"size": <input.size>, "data": "0123456789" repeated, cut to <input.size> characters}',
  /** Echoes unicode-heavy input and counts its code points. */
  conformance_unicode:
    'returns {"text": <input.text>, "payload": <input.payload>, "code_points": <number of Unicode code points in input.text>}',
  /** Creates a `conformance_success` task in its own namespace and makes its step wait for it. */
  conformance_delegate:
    'creates a task of template "conformance_success" in its own namespace with context {"value": <input.value>} (the SDK\'s create-task, a task request with direct reply-to) and returns "wait for that task" (the SDK\'s wait-for)',
  /** Sleeps input.sleep_ms ignoring any cancellation, then returns its attempt and idempotency key. */
  conformance_sleep:
    'sleeps <input.sleep_ms> ms without looking at cancellation, then returns {"slept_ms": <input.sleep_ms>, "attempt": <attempt>, "idempotency_key": <idempotency key>}',
} as const;

export type ConformanceCallable = keyof typeof CONFORMANCE_HANDLERS;

/** A callable no conformance worker may have: its step must fail with HANDLER_NOT_FOUND. */
export const MISSING_CALLABLE = 'conformance_no_such_handler';

/** Codes the conformance handlers use. */
export const PERMANENT_CODE = 'CONFORMANCE_PERMANENT';
export const RETRY_CODE = 'CONFORMANCE_RETRY';

/** Input of the unicode case: combining marks, astral characters, ZWJ sequences, RTL, line separators, escapes. */
export const UNICODE_TEXT =
  'Grüße, 世界! 😀 👩‍👩‍👧 🇸🇪 𝄞 e\u0301 עברית العربية \u2028\u2029 "quoted" \\back\\ tab\there\nnew line \u00a0nbsp ＦＵＬＬ';
export const UNICODE_PAYLOAD = {
  'ключ': 'значение',
  'emoji 🔑': ['🎉', 'ñ', '\u{1F600}', '\u200b'],
  '中文': { '嵌套': 'ok', 'ελληνικά': 'Καλημέρα' },
  'control\tkey': 'line1\nline2\r\nline3',
} as const;

/** The large case's data, as every SDK builds it. */
export function largeData(size: number): string {
  return '0123456789'.repeat(Math.ceil(size / 10)).slice(0, size);
}
