import { readdirSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Which packages each package may import: dependencies go one way. */
const ALLOWED: Record<string, string[]> = {
  protocol: [],
  transport: ['protocol'],
  client: ['protocol', 'transport'],
  worker: ['protocol', 'transport', 'client'],
  orchestrator: ['protocol', 'transport'],
  cli: ['protocol', 'client', 'orchestrator', 'worker'],
};

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name));
}

describe('package layout', () => {
  for (const [pkg, allowed] of Object.entries(ALLOWED)) {
    it(`${pkg} imports only ${allowed.length ? allowed.join(', ') : 'no other Tasker package'}`, () => {
      const offending: string[] = [];
      for (const file of sources(join(root, 'packages', pkg, 'src'))) {
        const text = readFileSync(file, 'utf8');
        for (const m of text.matchAll(/from\s+'@tasker\/([a-z-]+)/g)) {
          if (!allowed.includes(m[1]!)) offending.push(`${file.slice(root.length + 1)} imports @tasker/${m[1]}`);
        }
        if (/from\s+'\.\.\/\.\.\/(?!src)/.test(text)) offending.push(`${file.slice(root.length + 1)} reaches into another package by path`);
      }
      expect(offending).toEqual([]);
    });
  }

  it('protocol does no I/O', () => {
    const io = /from\s+'(node:)?(fs|net|http|https|child_process|dgram|fs\/promises)'|from\s+'(amqplib|pg|kysely)'/;
    const offending = sources(join(root, 'packages/protocol/src')).filter((f) => io.test(readFileSync(f, 'utf8')));
    expect(offending).toEqual([]);
  });

  it('library code logs through pino, never console', () => {
    const offending = Object.keys(ALLOWED)
      .flatMap((pkg) => sources(join(root, 'packages', pkg, 'src')))
      .filter((f) => !f.includes('/bin/') && /console\.(log|error|warn|info)/.test(readFileSync(f, 'utf8')));
    expect(offending).toEqual([]);
  });
});
