import { defineConfig } from 'vitest/config';

/**
 * Suites that run every plugin call through the daemon path as well (project "daemon").
 * Not here: tests of the standalone binary itself (foundation/binary, hardening,
 * ipam-inprocess), of process death (ipam/concurrency kills plugin processes; a killed
 * shim does not stop its request in the daemon), and suites without plugin calls. The
 * bridge differential (it passes through the daemon too; 3-4 minutes on this machine,
 * half of the daemon pass) runs there only with STRAND_TEST_DAEMON_ALL=1, to keep the
 * test command short.
 */
const DAEMON_PATH_SUITES = [
  'test/integration/bridge/options.test.ts',
  'test/integration/bridge/versions.test.ts',
  'test/integration/bridge/failure.test.ts',
  'test/integration/bridge/concurrency.test.ts',
  ...(process.env['STRAND_TEST_DAEMON_ALL'] === '1' ? ['test/integration/bridge/differential.test.ts'] : []),
  'test/integration/macvlan/*.test.ts',
  'test/integration/badinput/*.test.ts',
  'test/integration/foundation/bad-input.test.ts',
  'test/integration/ipam/local.test.ts',
  'test/integration/ipam/bridge.test.ts',
  'test/integration/ipam/etcd.test.ts',
  'test/integration/ipam/truth.test.ts',
  'test/integration/ipam/gc.test.ts',
  'test/integration/ipam/reservations.test.ts',
  'test/integration/ipam/pending.test.ts',
  'test/integration/deploy/verbs.test.ts',
  'test/integration/deploy/chain.test.ts',
  'test/integration/portmap/*.test.ts',
  'test/integration/loopback/*.test.ts',
];

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
        // The plugin suites again, every call through the shim and `strand daemon`
        // (test/helpers/daemon-setup.ts): the daemon path gives the standalone answers.
        test: {
          name: 'daemon',
          include: DAEMON_PATH_SUITES,
          environment: 'node',
          env: { STRAND_TEST_VIA: 'daemon' },
          globalSetup: ['test/helpers/daemon-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
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
