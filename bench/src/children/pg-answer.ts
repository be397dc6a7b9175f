// For the children's wrappers of pg's Client#query (trace.ts, timeline.ts).

/**
 * Calls pg's `query` (the original, unwrapped) with `args` on `client`, and runs `answered` once
 * the answer arrives, whichever way it comes: to a callback (pg-pool's `pool.query` passes one,
 * and pg then returns no promise) or as a promise (kysely, a client used alone).
 */
export function queryAnswered(
  query: (...args: unknown[]) => unknown,
  client: unknown,
  args: unknown[],
  answered: (ok: boolean) => void,
): unknown {
  const last = args.length - 1;
  if (typeof args[last] === 'function') {
    const callback = args[last] as (err: unknown, ...rest: unknown[]) => unknown;
    args[last] = (err: unknown, ...rest: unknown[]) => {
      answered(!err);
      return callback(err, ...rest);
    };
    return query.apply(client, args);
  }
  const out = query.apply(client, args);
  if (out && typeof (out as Promise<unknown>).then === 'function') (out as Promise<unknown>).then(() => answered(true), () => answered(false));
  return out;
}
