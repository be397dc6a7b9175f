import type { Logger } from 'pino';

/**
 * SIGTERM or SIGINT → `stop()`, then `process.exit(0)` (1 if stopping failed); a second
 * signal exits at once with 1. Returns a function that removes the handlers. Shared by the
 * native worker and the exec bridge.
 */
export function installStopOnSignals(stop: () => Promise<void>, logger: Logger, what: string): () => void {
  let received = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (received) {
      logger.warn({ signal }, 'second signal while stopping: exiting now');
      process.exit(1);
    }
    received = true;
    logger.info({ signal }, `signal received: stopping the ${what}`);
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, `${what} did not stop cleanly`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return () => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  };
}
