// npm run chaos [-- --nodes N] [-- --pods N] [-- --seconds S] [-- --kill P] [-- --orphan P]
//               [-- --seed N] [-- --runs N] [-- --no-etcd-chaos] [-- --json]      (root)
//
// The chaos suite (test/chaos/engine.ts): a 3-member etcd on loopback, N simulated
// nodes churning pods through the built strand-bridge + strand-ipam (etcd store) while
// etcd members and plugin processes are killed; then GC and the checks (no duplicate
// address, nothing leaked in the store or any namespace, the store consistent). Runs
// `--runs` times in a row (default 3, as issue 8 asks) and exits 1 on any violation.
import { parseArgs } from 'node:util';
import { runChaos } from '../test/chaos/engine.ts';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '8' },
    pods: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '120' },
    kill: { type: 'string', default: '0.15' },
    orphan: { type: 'string', default: '0.4' },
    seed: { type: 'string' },
    runs: { type: 'string', default: '3' },
    'no-etcd-chaos': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
  strict: true,
});

if (process.getuid?.() !== 0) throw new Error('npm run chaos needs root (network namespaces)');
const runs = Number(values.runs);
const seed0 = Number(values.seed ?? Date.now() % 1_000_000);
let failed = 0;
const reports = [];
for (let i = 0; i < runs; i++) {
  const r = await runChaos({
    nodes: Number(values.nodes),
    slotsPerNode: Number(values.pods),
    durationMs: Number(values.seconds) * 1000,
    killProbability: Number(values.kill),
    orphanProbability: Number(values.orphan),
    etcdChaos: !values['no-etcd-chaos'],
    seed: seed0 + i,
    tag: process.env['STRAND_TEST_PREFIX'] ?? 'sa',
  });
  reports.push(r);
  const ok = r.violations.length === 0;
  if (!ok) failed++;
  process.stdout.write(
    [
      `chaos run ${i + 1}/${runs} (seed ${r.seed}, ${r.seconds.toFixed(0)} s): ${ok ? 'PASS' : `FAIL, ${r.violations.length} violations`}`,
      `  ADD ok ${r.adds.ok}, killed ${r.adds.killed}, failed ${r.adds.failed} ${JSON.stringify(r.adds.codes)}`,
      `  DEL ok ${r.dels.ok}, killed ${r.dels.killed}, failed ${r.dels.failed} ${JSON.stringify(r.dels.codes)}`,
      `  etcd: ${r.events.join('; ') || 'no events'}; ADDs after the last event: ${r.addsAfterLastEvent}`,
      `  orphans: ${r.orphansByKill} abandoned after a killed ADD, ${r.orphansIpamOnly} IPAM-only; GC released ${r.gcReleased.length}; ${r.live} pods live at the end kept by GC`,
      ...r.violations.map((v) => `  VIOLATION ${v}`),
      '',
    ].join('\n'),
  );
}
if (values.json) process.stdout.write(`${JSON.stringify(reports)}\n`);
process.stdout.write(`chaos: ${runs - failed}/${runs} runs passed\n`);
if (failed) process.exitCode = 1;
