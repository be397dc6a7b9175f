#!/usr/bin/env node
// Runs one of the chaos suite's children (`node --import tsx child-main.ts <entrypoint.ts>`)
// and ties its life to the runner's (the approach of examples/refunds/src/demo/child-main.ts):
// stdin is a pipe from the runner, which never writes to it, so its end means the runner is
// gone, even killed with SIGKILL. The child then gets SIGTERM and stops the orderly way
// instead of consuming queues and holding connections until someone notices.
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
