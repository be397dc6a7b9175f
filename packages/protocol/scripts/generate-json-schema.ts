// Writes packages/protocol/schemas/*.json from the zod schemas. A test fails when the
// committed files differ from what this produces: run `pnpm schemas:generate` after a change.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateJsonSchemas } from '../src/json-schema.ts';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'schemas');
mkdirSync(dir, { recursive: true });
for (const [file, text] of Object.entries(generateJsonSchemas())) {
  writeFileSync(join(dir, file), text);
  process.stdout.write(`wrote ${join('packages/protocol/schemas', file)}\n`);
}
