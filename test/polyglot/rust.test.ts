/**
 * The Rust SDK (sdks/rust, serde_json from Debian's packaged crates, built offline) joined
 * through the worker runtime's exec bridge: its own cargo tests, the conformance kit
 * against its conformance worker, and the refunds scenario with both teams in Rust.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { SCENARIO_CHECKS, cargoPath, conformance, ensureRustBuilt, polyglotDemo, runCommand, rustExecWorker } from './support.ts';

describe('the Rust SDK', () => {
  beforeAll(async () => {
    await ensureRustBuilt();
  }, 240_000);

  it('passes its own test suite (cargo test --offline), and so do the Rust refund handlers', async () => {
    const sdk = await runCommand(cargoPath(), ['test', '--offline', '--quiet'], { cwd: 'sdks/rust' });
    expect(sdk.output).toMatch(/test result: ok/);
    expect(sdk.code, sdk.output).toBe(0);
    const handlers = await runCommand(cargoPath(), ['test', '--offline', '--quiet', '--target-dir', '../../../sdks/rust/target'], {
      cwd: 'examples/polyglot/rust',
    });
    expect(handlers.code, handlers.output).toBe(0);
  }, 180_000);

  it('its conformance worker, through the exec bridge, passes every conformance case', async () => {
    const report = await conformance('conf_rust', rustExecWorker('tasker-conformance-worker'));
    expect(report.pass, report.table).toBe(true);
  }, 90_000);

  it('runs the refunds scenario with both teams in Rust', async () => {
    const { code, output } = await polyglotDemo('rust', 'rust');
    for (const id of SCENARIO_CHECKS) expect(output, output).toContain(`PASS (${id})`);
    expect(code, output).toBe(0);
  }, 120_000);
});
