// Summarises V8 CPU profiles (`node --cpu-prof`, as written by `pnpm bench --profile`):
// self time by package and by function, and inclusive time of Tasker's own functions.
// Functions of a bundle (scripts/bundle.ts, which is what the bench runs) are named by the
// source they came from, through the bundle's source map.
//   tsx bench/src/profile-summary.ts <dir-or-file.cpuprofile> [...] [--top N] [--all]
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { table } from './report.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber?: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/**
 * Rewrites the call frames of bundled code (a `file://…` script with a `.map` beside it) to
 * the source each function came from: its file and line. Frames the map does not cover (the
 * bundler's own helpers) stay as they are. Returns how many frames were rewritten.
 */
export function mapToSources(p: Profile): number {
  const maps = new Map<string, { map: SourceMap; dir: string } | null>();
  let mapped = 0;
  for (const n of p.nodes) {
    const f = n.callFrame;
    if (!f.url.startsWith('file://')) continue;
    let m = maps.get(f.url);
    if (m === undefined) {
      const file = fileURLToPath(f.url);
      m = existsSync(`${file}.map`) ? { map: new SourceMap(JSON.parse(readFileSync(`${file}.map`, 'utf8'))), dir: dirname(file) } : null;
      maps.set(f.url, m);
    }
    if (!m) continue;
    const e = m.map.findEntry(f.lineNumber, f.columnNumber ?? 0) as { originalSource?: string; originalLine?: number };
    if (!e.originalSource) continue;
    const source = e.originalSource.startsWith('file://') ? e.originalSource : pathToFileURL(resolve(m.dir, e.originalSource)).href;
    n.callFrame = { ...f, url: source, lineNumber: e.originalLine ?? 0 };
    mapped++;
  }
  return mapped;
}

/** Which package a script belongs to, from its URL. */
export function packageOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native/V8)';
  if (url.startsWith('node:')) return 'node (core)';
  const pnpm = /node_modules\/\.pnpm\/((?:@[^+/]+\+)?[^@/]+)@/.exec(url);
  if (pnpm) return pnpm[1]!.replace('+', '/');
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (nm) return nm[1]!;
  const ours = /\/packages\/([^/]+)\/src\//.exec(url);
  if (ours) return `@tasker/${ours[1]}`;
  if (url.includes('/bench/src/')) return 'bench harness';
  // The bundler's own helpers (no source behind them in the map).
  if (/\/bundle\/[^/]+\.mjs$/.test(url)) return '(bundle runtime)';
  return url.replace(/^file:\/\//, '');
}

function where(url: string, line: number): string {
  const short = url.replace(/^file:\/\//, '').replace(/^.*\/bundle\//, 'bundle/').replace(/^.*node_modules\/\.pnpm\/[^/]+\/node_modules\//, '').replace(/^.*\/work\/main\//, '');
  return `${short}:${line + 1}`;
}

export function summarise(p: Profile, top: number): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  // Self time per node from the samples and their time deltas (µs).
  const self = new Map<number, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    const dt = deltas[i + 1] ?? deltas[i] ?? 0;
    self.set(samples[i]!, (self.get(samples[i]!) ?? 0) + dt);
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const idleIds = new Set(p.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id));
  const idle = [...idleIds].reduce((a, id) => a + (self.get(id) ?? 0), 0);
  const busy = total - idle;

  const byPkg = new Map<string, number>();
  const byFn = new Map<string, { pkg: string; us: number }>();
  for (const n of p.nodes) {
    const us = self.get(n.id) ?? 0;
    if (!us || idleIds.has(n.id)) continue;
    const pkg = packageOf(n.callFrame.url, n.callFrame.functionName);
    byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + us);
    const key = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url ? where(n.callFrame.url, n.callFrame.lineNumber) : ''}`;
    const e = byFn.get(key) ?? { pkg, us: 0 };
    e.us += us;
    byFn.set(key, e);
  }

  // Inclusive time of Tasker's own functions (each counted once per stack).
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, number>();
  for (const [id, us] of self) {
    if (idleIds.has(id)) continue;
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur)!;
      if (!/\/packages\/[^/]+\/src\//.test(n.callFrame.url)) continue;
      const key = `${n.callFrame.functionName || '(anonymous)'} ${where(n.callFrame.url, n.callFrame.lineNumber)}`;
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + us);
    }
  }

  const ms = (us: number) => Math.round(us / 100) / 10;
  const pct = (us: number) => `${Math.round((us / Math.max(1, busy)) * 1000) / 10}%`;
  const out: string[] = [];
  out.push(`wall ${ms(p.endTime - p.startTime)} ms, sampled ${ms(total)} ms, of which busy (not idle) ${ms(busy)} ms`);
  out.push('');
  out.push(table(['self time by package', 'ms', 'of busy'], [...byPkg.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => [k, ms(v), pct(v)])));
  out.push('');
  out.push(
    table(
      ['self time by function', 'package', 'ms', 'of busy'],
      [...byFn.entries()].sort((a, b) => b[1].us - a[1].us).slice(0, top).map(([k, v]) => [k.slice(0, 110), v.pkg, ms(v.us), pct(v.us)]),
    ),
  );
  out.push('');
  out.push(
    table(
      ["Tasker functions, inclusive (self + callees')", 'ms', 'of busy'],
      [...inclusive.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => [k.slice(0, 110), ms(v), pct(v)]),
    ),
  );
  return out.join('\n');
}

/** Profiles under the arguments (folders searched recursively). */
function files(args: string[]): string[] {
  const out: string[] = [];
  for (const a of args) {
    if (statSync(a).isDirectory()) {
      out.push(
        ...readdirSync(a, { recursive: true, encoding: 'utf8' })
          .filter((f) => f.endsWith('.cpuprofile'))
          .sort()
          .map((f) => join(a, f)),
      );
    } else out.push(a);
  }
  return out;
}

/** The loader-hooks thread's profile (tsx) is not the program's: it is skipped unless --all. */
function isLoaderThread(p: Profile): boolean {
  return !p.nodes.some((n) => /\/packages\/[^/]+\/src\//.test(n.callFrame.url)) && p.nodes.some((n) => n.callFrame.url === 'node:internal/modules/esm/worker');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const topAt = args.indexOf('--top');
  const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 25;
  const allAt = args.indexOf('--all');
  const all = allAt >= 0 && args.splice(allAt, 1).length > 0;
  if (args.length === 0) {
    process.stderr.write('usage: tsx bench/src/profile-summary.ts <dir-or-file.cpuprofile> [...] [--top N]\n');
    process.exit(2);
  }
  for (const f of files(args)) {
    const p = JSON.parse(readFileSync(f, 'utf8')) as Profile;
    mapToSources(p);
    if (!all && isLoaderThread(p)) continue;
    process.stdout.write(`\n### ${f}\n${summarise(p, top)}\n`);
  }
}
