#!/usr/bin/env tsx
// The `tasker` command. Exit codes: see exit-codes.ts (and `tasker --help`).
import { run } from './main.ts';

process.exitCode = await run(process.argv);
// Commands close what they open; this only guards against a stray handle (a keep-alive
// socket) holding the process after the answer is out. Unref'd: it never delays an exit.
setTimeout(() => process.exit(), 2000).unref();
