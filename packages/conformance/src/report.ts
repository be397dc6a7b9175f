import type { ConformanceReport } from './run.ts';

const useColor = (): boolean => !process.env['NO_COLOR'] && process.stdout.isTTY === true;
const paint = (code: string, s: string): string => (useColor() ? `\x1b[${code}m${s}\x1b[0m` : s);

/** The pass/fail table, one row per case, then the verdict line (`N passed, M failed`). */
export function formatReport(r: ConformanceReport, label = ''): string {
  const width = Math.max(...r.cases.map((c) => c.title.length), 10);
  const lines = [
    `Tasker worker conformance${label ? ` (${label})` : ''}: namespace ${r.namespace}, prefix ${r.prefix}`,
    `  ${'case'.padEnd(width)}  verdict  ms      detail`,
    `  ${'-'.repeat(width)}  -------  ------  ------`,
  ];
  for (const c of r.cases) {
    const verdict = c.pass ? paint('32', 'PASS   ') : paint('31', 'FAIL   ');
    lines.push(`  ${c.title.padEnd(width)}  ${verdict}  ${String(c.ms).padStart(6)}  ${c.detail}`);
  }
  const passed = r.cases.filter((c) => c.pass).length;
  lines.push(`conformance: ${passed} passed, ${r.cases.length - passed} failed`);
  if (!r.pass && r.workerTail.length > 0) {
    lines.push('the worker\'s last output lines:');
    for (const l of r.workerTail) lines.push(`  ${l}`);
  }
  return lines.join('\n');
}
