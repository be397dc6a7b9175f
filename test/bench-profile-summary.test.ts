import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { bundle } from '../scripts/bundle.ts';
import { mapToSources, packageOf } from '../bench/src/profile-summary.ts';

// `pnpm bench --profile` profiles the bundles the bench runs; the summary names each bundled
// function by the source it came from, through the bundle's source map.
const dir = mkdtempSync(join(tmpdir(), 'tasker-profile-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('profile summary of a bundle', () => {
  it('names a bundled function by its source file and line, and leaves frames the map does not cover', async () => {
    const src = join(dir, 'packages', 'demo', 'src');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'helper.ts'), ['// line 1', '', 'export function addUp(xs: number[]): number {', '  let n = 0;', '  for (const x of xs) n += x;', '  return n;', '}', ''].join('\n'));
    writeFileSync(join(src, 'main.ts'), "import { addUp } from './helper.ts';\nconsole.log(addUp([1, 2, 3]));\n");
    const out = join(dir, 'out', 'main.mjs');
    await bundle(join(src, 'main.ts'), out);
    const lines = readFileSync(out, 'utf8').split('\n');
    const at = lines.findIndex((l) => l.includes('function addUp('));
    expect(at).toBeGreaterThan(0);
    const url = pathToFileURL(out).href;
    const profile = {
      startTime: 0,
      endTime: 1,
      nodes: [
        { id: 1, callFrame: { functionName: 'addUp', url, lineNumber: at, columnNumber: lines[at]!.indexOf('function') } },
        { id: 2, callFrame: { functionName: 'writev', url: '', lineNumber: -1, columnNumber: -1 } },
      ],
    };
    expect(mapToSources(profile)).toBe(1);
    const frame = profile.nodes[0]!.callFrame;
    expect(frame.url).toBe(pathToFileURL(join(src, 'helper.ts')).href);
    expect(frame.lineNumber).toBe(2); // zero-based: line 3 of helper.ts
    expect(packageOf(frame.url, frame.functionName)).toBe('@tasker/demo');
    expect(profile.nodes[1]!.callFrame.url).toBe('');
  });
});
