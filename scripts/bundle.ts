// Builds the orchestrator as one self-contained ES module for production:
// `node packages/orchestrator/dist/orchestrator.mjs`. Running from source needs tsx's loader,
// which holds ~50 MB more at start (issue 7, bench/RESULTS.md "Memory") and transpiles every
// module on the way in; the bundle is plain JavaScript with its dependencies inside.
//
//   pnpm build
import { build } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Bundles `entry` and everything it imports into `outfile` (an ES module for Node 20). */
export async function bundle(entry: string, outfile: string): Promise<void> {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: 'linked',
    // pg loads its optional native binding only when asked (`pg.native`), which Tasker never does.
    external: ['pg-native'],
    // CommonJS dependencies inside an ES module still call require().
    banner: { js: "import { createRequire as __taskerRequire } from 'node:module'; const require = __taskerRequire(import.meta.url);" },
    logLevel: 'warning',
  });
}

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
export const ORCHESTRATOR_BUNDLE = join(ROOT, 'packages/orchestrator/dist/orchestrator.mjs');

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const t0 = performance.now();
  await bundle(join(ROOT, 'packages/orchestrator/src/bin/orchestrator.ts'), ORCHESTRATOR_BUNDLE);
  process.stdout.write(`built ${ORCHESTRATOR_BUNDLE} in ${Math.round(performance.now() - t0)} ms\n`);
}
