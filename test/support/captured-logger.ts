import pino, { type Logger } from 'pino';

/** One pino log line, parsed. */
export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/**
 * A pino logger that keeps every line in memory, so a test can assert what was logged
 * (a result that "changed nothing" says so only in the log) and that nothing crashed
 * ("batch failed unexpectedly"). Lines are also printed when TEST_LOG_LEVEL is set.
 */
export function capturedLogger(level: pino.Level = 'info'): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const echo = process.env.TEST_LOG_LEVEL && process.env.TEST_LOG_LEVEL !== 'silent';
  const logger = pino({ level }, {
    write(s: string) {
      lines.push(JSON.parse(s) as LogLine);
      if (echo) process.stdout.write(s);
    },
  });
  return { logger, lines };
}
