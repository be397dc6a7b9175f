import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    // Real Postgres and RabbitMQ: the local ones, or containers where Docker runs.
    globalSetup: ['test/global-setup.ts'],
    // Chaos tests and benchmarks are run on purpose, never by a plain `vitest run`.
    exclude: ['**/node_modules/**', 'test/chaos/**', 'bench/**'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Forks, not threads: integration tests hold sockets and native handles.
    pool: 'forks',
    fileParallelism: true,
    // Two-core machine.
    maxWorkers: 2,
  },
});
