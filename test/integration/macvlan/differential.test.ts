import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { addPod, diffRun, expectedFromRef, hostLocal, makeSegment, refBin, strandBin, type DiffRun, type Pod, type Segment } from './harness.ts';

// The same configuration through Debian's reference `macvlan` (v1.1.1) and through
// strand-macvlan, one after the other in the same pod namespace, each with its own
// host-local data dir so both get the same address: the kernel state they leave (pod and
// host namespaces) and their result JSON must match once random MACs are normalised.
//
// Known, intended differences: see expectedFromRef() in harness.ts.

let seg: Segment | undefined;
afterEach(() => {
  seg?.cleanup();
  seg = undefined;
});

function through(s: Segment, pod: Pod, exe: string, type: string, patch: Record<string, unknown>, dataDir: string): Promise<DiffRun> {
  const { dual, ...rest } = patch;
  const conf = { cniVersion: '1.0.0', name: 's8diff', type, master: s.master, ipam: hostLocal(s, { dataDir, dual: dual === true }), ...rest };
  return diffRun(s, pod, exe, conf);
}

const CASES: Array<[string, Record<string, unknown>]> = [
  ['bridge', { mode: 'bridge' }],
  ['private', { mode: 'private' }],
  ['vepa', { mode: 'vepa' }],
  ['passthru', { mode: 'passthru' }],
  ['default mode, custom mtu', { mtu: 1400 }],
  ['bridge, dual-stack', { mode: 'bridge', dual: true }],
  ['fixed mac, L2 only', { mac: '02:00:00:00:00:42', ipam: {} }],
];

describe('strand-macvlan vs reference macvlan: same kernel state, same result', () => {
  it.each(CASES)('%s', async (_label, patch) => {
    seg = makeSegment({ masterMtu: 1500 });
    const s = seg;
    const pod = addPod(s, 'p');
    const ref = await through(s, pod, refBin('macvlan'), 'macvlan', patch, join(s.tmp, 'ref'));
    const ours = await through(s, pod, strandBin('strand-macvlan'), 'strand-macvlan', patch, join(s.tmp, 'ours'));
    expect(ours.snap).toEqual(expectedFromRef(ref.snap, pod.ifName, patch['dual'] === true));
    expect(ours.result).toEqual(ref.result);
  });
});
