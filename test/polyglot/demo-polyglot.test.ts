/**
 * The README's polyglot command, as the mission tells it: customer_success in Ruby and
 * payments in Rust (exec bridge) against the TypeScript orchestrator, every expected outcome.
 */
import { describe, expect, it } from 'vitest';
import { SCENARIO_CHECKS, ensureRustBuilt, polyglotDemo } from './support.ts';

describe('pnpm demo:polyglot', () => {
  it('customer_success in Ruby and payments in Rust: exits 0 with every expected outcome PASS', async () => {
    await ensureRustBuilt();
    const { code, output } = await polyglotDemo('ruby', 'rust');
    for (const id of SCENARIO_CHECKS) expect(output, output).toContain(`PASS (${id})`);
    expect(output, output).not.toContain('FAIL');
    expect(output).toContain('customer_success: ruby, payments: rust');
    expect(code, output).toBe(0);
  }, 180_000);
});
