import { defineConfig } from 'vitest/config';

// Two projects: `unit` needs neither root nor a build; `integration` runs the built
// binaries in real network namespaces (root, after scripts/build.sh).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
          // A few unit tests start processes (the validator generator, concurrent log
          // writers): 5 s, vitest's default, is too tight on a loaded 2-core machine.
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // Integration tests share the kernel; files run one at a time, tests inside a
          // file run in order.
          fileParallelism: false,
          pool: 'forks',
        },
      },
      {
        test: {
          name: 'guest',
          include: ['test/guest/**/*.test.ts'],
          testTimeout: 120000,
          hookTimeout: 120000,
          fileParallelism: false,
          pool: 'forks',
        },
      },
    ],
  },
});
