#!/usr/bin/env node
// Runs a child process of the demo or of the chaos suite (`node --import tsx child-main.ts
// <entrypoint.ts>`) and ties its life to its parent's: stdin is a pipe from the parent, which
// never writes to it, so its end means the parent is gone, even killed with SIGKILL (no
// cleanup of its own ran). The child then gets SIGTERM and stops the orderly way instead of
// holding the port, the queues' consumers and the database connections until someone notices.
import { pathToFileURL } from 'node:url';

const entrypoint = process.argv[2];
if (!entrypoint) {
  console.error('usage: node --import tsx child-main.ts <entrypoint.ts>');
  process.exit(2);
}
process.stdin.once('end', () => process.kill(process.pid, 'SIGTERM'));
process.stdin.resume();
// Watching stdin must not be what keeps the process running.
(process.stdin as unknown as { unref?: () => void }).unref?.();
await import(pathToFileURL(entrypoint).href);
