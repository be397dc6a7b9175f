import { readdirSync, readFileSync } from 'node:fs';
import { allChildren } from './proc.ts';
import { round } from './util.ts';

/** Clock ticks per second of /proc's utime and stime (USER_HZ; 100 on Linux). */
const HZ = 100;

function snapshot(): Map<number, { comm: string; ticks: number }> {
  const out = new Map<number, { comm: string; ticks: number }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const f = stat.slice(close + 2).split(' ');
      out.set(Number(name), { comm, ticks: Number(f[11]) + Number(f[12]) });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * Where the machine's CPU went between start and stop, in % of one core, grouped: the
 * bench's own child processes by name, this process, RabbitMQ, PostgreSQL (every backend,
 * other clients' included), Redis, and everything else by command name.
 */
export function cpuByProcess(): () => Record<string, number> {
  const before = snapshot();
  const t0 = performance.now();
  const names = new Map<number, string>();
  for (const c of allChildren) names.set(c.pid, c.name);
  return () => {
    for (const c of allChildren) names.set(c.pid, c.name);
    const after = snapshot();
    const seconds = (performance.now() - t0) / 1000;
    const groups = new Map<string, number>();
    for (const [pid, a] of after) {
      const b = before.get(pid);
      const ticks = a.ticks - (b ? b.ticks : 0); // kernel threads rename themselves: match by pid
      if (ticks <= 0) continue;
      const group =
        names.get(pid) ??
        (pid === process.pid
          ? 'bench (load generator)'
          : a.comm === 'beam.smp' || a.comm.startsWith('erl')
            ? 'rabbitmq'
            : a.comm === 'postgres'
              ? 'postgres (all backends)'
              : a.comm.startsWith('redis')
                ? 'redis'
                : a.comm.startsWith('kworker')
                  ? 'kernel workers'
                  : `other: ${a.comm}`);
      groups.set(group, (groups.get(group) ?? 0) + ticks);
    }
    return Object.fromEntries(
      [...groups.entries()]
        .map(([k, t]) => [k, round((t / HZ / seconds) * 100, 1)] as const)
        .filter(([, pct]) => pct >= 1)
        .sort((x, y) => y[1] - x[1]),
    );
  };
}
