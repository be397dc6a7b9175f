/** The TypeScript worker (native AMQP) passes the conformance kit, as every SDK must. */
import { describe, expect, it } from 'vitest';
import { conformance } from './support.ts';

describe('the TypeScript SDK', () => {
  it('its conformance worker passes every conformance case', async () => {
    const report = await conformance('conf_typescript', [process.execPath, '--import', 'tsx', 'packages/conformance/src/workers/typescript.ts']);
    expect(report.pass, report.table).toBe(true);
  }, 90_000);
});
