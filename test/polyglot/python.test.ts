/**
 * The Python SDK (sdks/python, pika from Debian's python3-pika on /usr/bin/python3): its own
 * tests, the conformance kit against its conformance worker, and the refunds scenario with
 * both teams' handlers in Python.
 */
import { describe, expect, it } from 'vitest';
import { PYTHON, SCENARIO_CHECKS, conformance, polyglotDemo, runCommand } from './support.ts';

describe('the Python SDK', () => {
  it("passes its own test suite (python3 -m unittest)", async () => {
    const r = await runCommand(PYTHON, ['-m', 'unittest', 'discover', '-s', 'tests', '-t', '.'], { cwd: 'sdks/python' });
    expect(r.output).toMatch(/\nOK/);
    expect(r.code, r.output).toBe(0);
  }, 60_000);

  it('its conformance worker passes every conformance case', async () => {
    const report = await conformance('conf_python', [PYTHON, 'sdks/python/examples/conformance_worker.py']);
    expect(report.pass, report.table).toBe(true);
  }, 90_000);

  it('runs the refunds scenario with both teams in Python', async () => {
    const { code, output } = await polyglotDemo('python', 'python');
    for (const id of SCENARIO_CHECKS) expect(output, output).toContain(`PASS (${id})`);
    expect(code, output).toBe(0);
  }, 120_000);
});
