/**
 * The Ruby SDK (sdks/ruby, bunny from Debian's ruby-bunny): its own tests, the conformance
 * kit against its conformance worker, and the refunds scenario with both teams' handlers in
 * Ruby.
 */
import { describe, expect, it } from 'vitest';
import { RUBY, SCENARIO_CHECKS, conformance, polyglotDemo, runCommand } from './support.ts';

describe('the Ruby SDK', () => {
  it('passes its own test suite (minitest)', async () => {
    const r = await runCommand(RUBY, ['sdks/ruby/test/run.rb']);
    expect(r.output).toMatch(/\d+ runs, \d+ assertions, 0 failures, 0 errors/);
    expect(r.code, r.output).toBe(0);
  }, 60_000);

  it('its conformance worker passes every conformance case', async () => {
    const report = await conformance('conf_ruby', [RUBY, 'sdks/ruby/examples/conformance_worker.rb']);
    expect(report.pass, report.table).toBe(true);
  }, 90_000);

  it('runs the refunds scenario with both teams in Ruby', async () => {
    const { code, output } = await polyglotDemo('ruby', 'ruby');
    for (const id of SCENARIO_CHECKS) expect(output, output).toContain(`PASS (${id})`);
    expect(code, output).toBe(0);
  }, 120_000);
});
