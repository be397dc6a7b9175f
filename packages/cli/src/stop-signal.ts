/**
 * Resolves on the first SIGTERM or SIGINT (with its name) so a long-running command can
 * stop cleanly; a second signal while stopping exits at once with 1.
 */
export function untilStopSignal(onSecond: () => void = () => process.exit(1)): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const handler = (signal: NodeJS.Signals): void => {
      if (received) return onSecond();
      received = true;
      resolve(signal);
    };
    process.on('SIGTERM', handler);
    process.on('SIGINT', handler);
  });
}

/**
 * Starts a service unless a stop signal comes first. Services wait for their broker and
 * database (reconnecting with backoff), so a SIGTERM while starting must not wait for
 * that: it returns null at once, and whatever starts late is stopped again.
 */
export async function startUnlessStopped<T>(start: Promise<T>, stop: Promise<NodeJS.Signals>, stopLate: (service: T) => Promise<void>): Promise<T | null> {
  const first = await Promise.race([start.then((service) => ({ service })), stop.then(() => null)]);
  if (first === null) {
    start.then(stopLate, () => undefined);
    return null;
  }
  return first.service;
}
