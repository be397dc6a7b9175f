import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// The benchmark is not a test (issue 7): this only checks that the harness runs end to end
// in its tiny mode and writes the figures it promises. It asserts no speed.
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(join(tmpdir(), 'tasker-bench-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function redisReachable(): Promise<boolean> {
  const url = new URL(process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379');
  return new Promise((resolve) => {
    const s = new Socket();
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('error', () => done(false));
    s.connect(Number(url.port || 6379), url.hostname, () => done(true));
  });
}

describe('benchmark harness', () => {
  it('runs every section in tiny mode and writes the JSON figures', async () => {
    // Postgres peers always; BullMQ (without touching Redis's persistence settings) where Redis runs.
    const redis = await redisReachable();
    const peers = ['graphile_worker', ...(redis ? ['bullmq_flow'] : [])];
    const json = join(dir, 'bench.json');
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        ['--import', 'tsx', join(root, 'bench/src/main.ts'), '--tiny', '--warmup', '3', '--prefill', '30', '--profile-window', '--peers', peers.join(','), ...(redis ? ['--paired', '2'] : []), '--json', json, '--out', join(dir, 'out')],
        { cwd: root, timeout: 100_000, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, TASKER_LOG_LEVEL: 'warn' } },
        (_err, stdout, stderr) => resolve({ code: child.exitCode, output: `${stdout}\n${stderr}` }),
      );
    });
    expect(code, output).toBe(0);

    const r = JSON.parse(readFileSync(json, 'utf8')) as Record<string, any>;
    const isNumber = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
    expect(r.queue_type).toMatch(/^(classic|quorum)$/);
    expect(r.results_queue_type).toBe(r.queue_type);
    // --warmup: the unmeasured tasks before every throughput run (tiny mode's own default is 2).
    expect(r.sizes.warmupTasks).toBe(3);
    for (const [path, value] of Object.entries({
      'throughput.steps_per_sec': r.throughput?.steps_per_sec,
      'throughput.pg_wal_bytes_per_step': r.throughput?.pg_wal_bytes_per_step,
      'throughput.pg_write_xacts_per_step': r.throughput?.pg_write_xacts_per_step,
      'overhead_ms.p50': r.overhead_ms?.p50,
      'overhead_ms.p99': r.overhead_ms?.p99,
      'overhead_ms.first_handler_p50': r.overhead_ms?.first_handler_p50,
      'overhead_ms.seen_p50': r.overhead_ms?.seen_p50,
      'overhead_ms.first_pass.p50': r.overhead_ms?.first_pass?.p50,
      'create.http_per_sec': r.create?.http_per_sec,
      'create.http_64_per_sec': r.create?.http_64_per_sec,
      'create.http.latency_ms.p50': r.create?.http?.latency_ms?.p50,
      'create.http_batch_per_sec': r.create?.http_batch_per_sec,
      'create.amqp_per_sec': r.create?.amqp_per_sec,
      'limit.two_hop_msgs_per_sec': r.limit?.two_hop_msgs_per_sec,
      'memory_mb.orchestrator': r.memory_mb?.orchestrator,
      'overhead_by_language.typescript.p50_ms': r.overhead_by_language?.typescript?.p50_ms,
    })) {
      expect(isNumber(value), `${path} = ${JSON.stringify(value)}`).toBe(true);
    }
    // Read from the WAL, not from statistics Postgres reports up to seconds late: even a tiny
    // run's throughput wrote, committed and was counted (its counters once read zero).
    expect(r.throughput.pg_write_xacts_per_step).toBeGreaterThan(0);
    expect(r.throughput.pg_wal_bytes_per_step).toBeGreaterThan(0);
    // Commit records and whole pages are counted with pg_walinspect, which takes a superuser
    // to create (the local test server's postgres user is one); without it the run says so.
    if (r.throughput.pg_commits_per_step === undefined) {
      expect(output).toContain('pg_walinspect could not be created');
    } else {
      expect(r.throughput.pg_commits_per_step).toBeGreaterThan(0);
      expect(isNumber(r.throughput.pg_wal_fpi_per_step)).toBe(true);
    }
    // --profile-window: a V8 profile of the orchestrator and of the worker over the measured
    // throughput runs, with samples in it.
    const runDir = join(dir, 'out', readdirSync(join(dir, 'out')).find((d) => d.startsWith('run-'))!);
    for (const child of ['orchestrator-main-1', 'worker-main-1']) {
      const profile = JSON.parse(readFileSync(join(runDir, 'profiles', `${child}.throughput.cpuprofile`), 'utf8')) as { nodes: unknown[]; samples: number[] };
      expect(profile.nodes.length, child).toBeGreaterThan(1);
      expect(profile.samples.length, child).toBeGreaterThan(0);
    }
    // --prefill: the finished tasks were in sections 1-3's tables before they measured: 30 tasks,
    // their 4 steps and 14 audit rows each (the counts are read back after the fill, before the
    // sections add their own).
    expect(r.prefill).toMatchObject({ tasks: 30, steps: 120, transitions: 420 });
    expect(isNumber(r.prefill.seconds)).toBe(true);
    // How idle CPUs wait, as the kernel says it (null fields where it says nothing).
    const sysfs = (path: string) => {
      try {
        return readFileSync(path, 'utf8').trim();
      } catch {
        return null;
      }
    };
    const driver = sysfs('/sys/devices/system/cpu/cpuidle/current_driver');
    const pollNs = driver === 'haltpoll' ? sysfs('/sys/module/haltpoll/parameters/guest_halt_poll_ns') : null;
    expect(r.machine?.cpu_idle).toEqual({ driver, halt_poll_ns: pollNs === null ? null : Number(pollNs) });
    // Causal order, measured across two processes: a handler starts after its request was sent,
    // and the bench sees a task complete after its last handler ran (on the wall clock the
    // second came out negative: each process reads that clock's origin once, at its start).
    expect(r.overhead_ms.first_handler_p50, 'overhead_ms.first_handler_p50').toBeGreaterThan(0);
    expect(r.overhead_ms.seen_p50, 'overhead_ms.seen_p50').toBeGreaterThan(0);
    // The floor of a step's gap: section 4's two hops on the work queue type and its one-row commit, both of this run.
    const hops = r.limit.two_hop[r.queue_type].latency_p50_ms;
    const commit = r.limit.postgres_cas.single_commit_p50_ms;
    expect(r.overhead_ms.floor).toEqual({ queue_type: r.queue_type, two_hop_p50_ms: hops, commit_p50_ms: commit, p50_ms: Math.round((hops + commit) * 1000) / 1000 });
    expect(r.overhead_ms.floor.p50_ms).toBeGreaterThan(0);
    for (const name of peers) {
      expect(isNumber(r.peers?.[name]?.steps_per_sec), `peers.${name}.steps_per_sec`).toBe(true);
      expect(typeof r.peers?.[name]?.durable, `peers.${name}.durable`).toBe('boolean');
    }
    if (redis) {
      // --paired: Tasker and BullMQ alternately, a ratio for each pair and their median.
      const pair = r.paired?.bullmq_flow;
      expect(pair?.tasker_steps_per_sec, JSON.stringify(r.paired)).toHaveLength(2);
      expect(pair.peer_steps_per_sec).toHaveLength(2);
      expect(pair.ratios).toEqual(pair.tasker_steps_per_sec.map((t: number, i: number) => Math.round((t / pair.peer_steps_per_sec[i]) * 100) / 100));
      expect(isNumber(pair.median_ratio)).toBe(true);
      expect(pair.durable).toBe(false);
      expect(r.targets.map((t: { target: string }) => t.target)).toContain('stretch: ahead of bullmq_flow (Redis keeps nothing on disk), paired');
    }
    expect(output).toContain('Summary');
  }, 110_000); // typically 12–25 s; the margin is for a machine busy with other suites

  it('the decoding cost script runs and prints a figure for every message it measures', async () => {
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = execFile(process.execPath, ['--import', 'tsx', join(root, 'bench/src/decode-cost.ts'), '--rounds', '5'], { cwd: root, timeout: 60_000 }, (_err, stdout, stderr) =>
        resolve({ code: child.exitCode, output: `${stdout}\n${stderr}` }),
      );
    });
    expect(code, output).toBe(0);
    const rows = output.split('\n').filter((l) => /^step (message|result)/.test(l));
    expect(rows, output).toHaveLength(4);
    // Every cell after the message's name is a number: bytes, then microseconds.
    for (const row of rows) expect(row.split(/\s{2,}/).slice(1).every((c) => Number.isFinite(Number(c))), row).toBe(true);
  });
});
