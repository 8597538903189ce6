// The chaos suite in a bounded form for CI (the full one is `npm run chaos`): a 3-member
// etcd, 8 simulated nodes churning pods through the built strand-bridge + strand-ipam
// for 30 s while the etcd leader and a random member are killed and restarted and plugin
// processes are SIGKILLed mid-ADD and mid-DEL; then GC and the checks of
// test/chaos/engine.ts (no duplicate address, nothing leaked in the store or in any
// namespace, the store consistent, everything gone after the last DEL).
import { describe, expect, it } from 'vitest';
import { runChaos } from '../../chaos/engine.ts';

const SEED = Number(process.env['STRAND_CHAOS_SEED'] ?? 20261122);

describe('chaos (bounded)', () => {
  it(`8 nodes, 30 s of churn with etcd and plugin kills: no duplicate, no leak (seed ${SEED})`, { timeout: 300_000 }, async () => {
    const r = await runChaos({
      nodes: 8,
      slotsPerNode: 1,
      durationMs: 30_000,
      killProbability: 0.25,
      orphanProbability: 0.5,
      seed: SEED,
      tag: process.env['STRAND_TEST_PREFIX'] ?? 'sa',
      log: () => {},
    });
    const summary = JSON.stringify({ ...r, gcReleased: r.gcReleased.length }, null, 1);
    expect(r.violations, summary).toEqual([]);
    // the run did what it claims: churn, kills, etcd events, orphans reclaimed, allocations after recovery
    expect(r.adds.ok, summary).toBeGreaterThan(16);
    expect(r.adds.killed + r.dels.killed, summary).toBeGreaterThan(0);
    expect(r.events.filter((e) => e.includes('SIGKILL')).length, summary).toBe(3);
    expect(r.addsAfterLastEvent, summary).toBeGreaterThan(0);
    expect(r.gcReleased.length, summary).toBeGreaterThanOrEqual(r.orphansIpamOnly);
    expect(r.live, summary).toBeGreaterThan(0);
  });
});
