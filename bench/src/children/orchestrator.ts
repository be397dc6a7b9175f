// An orchestrator process for the bench, configured by TASKER_* like the real binary; it
// reports its HTTP address over IPC and serves CPU/SQL/confirm statistics on request.
import '../experiments.ts';
import pino from 'pino';
import { Orchestrator, tuneHeap } from '@tasker/orchestrator';
import { fatal, onStop, ready } from './ipc.ts';
import { installAmqpTrace, installSqlTrace, serveStats } from './trace.ts';

if (process.env.BENCH_TRACE === '1') {
  installSqlTrace();
  installAmqpTrace();
}
serveStats();
// As the orchestrator's binary does.
tuneHeap();

let orchestrator: Orchestrator | null = null;
onStop(async () => {
  await orchestrator?.stop();
});
try {
  orchestrator = await Orchestrator.start({
    logger: pino({ level: process.env.TASKER_LOG_LEVEL ?? 'warn', base: { component: 'orchestrator', pid: process.pid } }),
  });
} catch (err) {
  fatal(err);
}
ready({ httpUrl: orchestrator.httpUrl });
