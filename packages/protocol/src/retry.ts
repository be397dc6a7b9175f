/**
 * Retry policy: normalization of a template's `retry` block and the delay before the next
 * attempt. The orchestrator is the only component that computes delays; this module is
 * pure so the rules are testable and documented in one place.
 *
 * Rules:
 * - `max_attempts` counts every attempt including the first. `retryable: false` means one
 *   attempt. `max_attempts: 0` (seen in the original project's templates next to
 *   `retryable: false`) is read as one attempt: a step always runs at least once.
 * - The base delay is `backoff_base_ms`, or `initial_delay` seconds; the cap is
 *   `max_backoff_ms`, or `max_delay` seconds. Giving both forms with different values is
 *   refused at load time.
 * - Delay before attempt n+1 (after attempt n failed):
 *     exponential: base × multiplier^(n−1)   (multiplier: `backoff_multiplier`, default 2)
 *     linear:      base × n
 *     fixed:       base
 *     none:        0
 *   capped at the cap, then jittered: the delay used is uniformly drawn from
 *   [(1 − JITTER_FRACTION) × d, d]. Jitter only shortens, so the cap always holds.
 * - A handler's retry-after (`error.retry_after_ms`) replaces the computed delay, capped at
 *   the policy's cap, without jitter.
 */
export const BACKOFF_KINDS = ['exponential', 'linear', 'fixed', 'none'] as const;
export type BackoffKind = (typeof BACKOFF_KINDS)[number];

/** Fraction by which jitter may shorten a computed delay. */
export const JITTER_FRACTION = 0.25;

export interface RetryPolicy {
  /** Attempts in all, including the first; at least 1. */
  maxAttempts: number;
  backoff: BackoffKind;
  /** @defaultValue 1000 */
  baseDelayMs: number;
  /** @defaultValue 300000 (5 minutes) */
  maxDelayMs: number;
  /** @defaultValue 2 */
  multiplier: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxAttempts: 3,
  backoff: 'exponential',
  baseDelayMs: 1000,
  maxDelayMs: 300_000,
  multiplier: 2,
};

/** The delay before the attempt after `failedAttempt`, before jitter, capped. */
export function computeBackoffMs(policy: RetryPolicy, failedAttempt: number): number {
  const n = Math.max(1, failedAttempt);
  let d: number;
  switch (policy.backoff) {
    case 'exponential':
      d = policy.baseDelayMs * policy.multiplier ** (n - 1);
      break;
    case 'linear':
      d = policy.baseDelayMs * n;
      break;
    case 'fixed':
      d = policy.baseDelayMs;
      break;
    case 'none':
      d = 0;
      break;
  }
  return Math.round(Math.min(d, policy.maxDelayMs));
}

/**
 * The delay actually used: a handler's retry-after (capped, no jitter) or the policy's
 * backoff with jitter. `random` is injectable for tests.
 */
export function retryDelayMs(
  policy: RetryPolicy,
  failedAttempt: number,
  retryAfterMs?: number | null,
  random: () => number = Math.random,
): number {
  if (retryAfterMs != null) return Math.round(Math.max(0, Math.min(retryAfterMs, policy.maxDelayMs)));
  const d = computeBackoffMs(policy, failedAttempt);
  return Math.round(d * (1 - JITTER_FRACTION * random()));
}

/** Bounds a test can assert on: [low, high] for the jittered delay. */
export function retryDelayBoundsMs(policy: RetryPolicy, failedAttempt: number): [number, number] {
  const d = computeBackoffMs(policy, failedAttempt);
  return [Math.floor(d * (1 - JITTER_FRACTION)), d];
}
