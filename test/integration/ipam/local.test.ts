// strand-ipam with the local store, as processes: a host-local config with only `type`
// changed gives the same addresses as the reference host-local, concurrent processes
// never collide, a process SIGKILLed mid-ADD leaves a readable consistent document.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runPlugin, refBinDir } from '../../helpers/run-plugin.ts';
import { LocalStore, DOC_FILE } from '../../../ipam/store/local.ts';
import { addAndKill, addrOf, consistency, gcConf, plugin, requireBuilt, runMany, type Op } from './helpers.ts';

let dir: string;
beforeEach(() => {
  requireBuilt();
  dir = mkdtempSync(join(tmpdir(), 's4-ipam-local-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function hostLocalConf(type: string, dataDir: string, ipam: Record<string, unknown>, cniVersion = '1.0.0'): Record<string, unknown> {
  return { cniVersion, name: 'net-local', type: 'bridge', ipam: { type, dataDir, ...ipam } };
}

const SCENARIOS: Array<[string, Record<string, unknown>]> = [
  ['single range with routes', { ranges: [[{ subnet: '10.40.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }, { dst: '192.168.0.0/16', gw: '10.40.0.254' }] }],
  ['dual stack', { ranges: [[{ subnet: '10.41.0.0/24' }], [{ subnet: 'fd41::/64' }]] }],
  ['rangeStart/rangeEnd and gateway', { ranges: [[{ subnet: '10.42.0.0/24', rangeStart: '10.42.0.100', rangeEnd: '10.42.0.110', gateway: '10.42.0.105' }]] }],
  ['legacy top-level subnet', { subnet: '10.43.0.0/28' }],
  ['two ranges in one set', { ranges: [[{ subnet: '10.44.0.0/30' }, { subnet: '10.44.1.0/29' }]] }],
];

describe('strand-ipam local store vs reference host-local', () => {
  for (const [name, ipam] of SCENARIOS) {
    it(`same addresses as host-local: ${name}`, async () => {
      const seq: Array<['ADD' | 'DEL', string]> = [
        ['ADD', 'a'],
        ['ADD', 'b'],
        ['ADD', 'c'],
        ['DEL', 'b'],
        ['ADD', 'd'],
        ['DEL', 'a'],
        ['ADD', 'e'],
      ];
      const results: Record<string, string[]> = { ref: [], ours: [] };
      for (const [who, bin, type] of [
        ['ref', join(refBinDir, 'host-local'), 'host-local'],
        ['ours', 'strand-ipam', 'strand-ipam'],
      ] as const) {
        const conf = hostLocalConf(type, join(dir, who), ipam);
        for (const [command, id] of seq) {
          const r = await runPlugin(bin, { command, containerId: id, netns: '/var/run/netns/none', ifName: 'eth0', path: refBinDir }, conf);
          expect(r.code, `${who} ${command} ${id}: ${r.stdout}`).toBe(0);
          if (command === 'ADD') results[who]?.push(JSON.stringify({ ips: r.json.ips, routes: r.json.routes ?? [] }));
        }
      }
      expect(results['ours']).toEqual(results['ref']);
    });
  }

  it('exhaustion answers 102 naming the range; a taken requested IP 103', async () => {
    const conf = hostLocalConf('strand-ipam', dir, { ranges: [[{ subnet: '10.45.0.0/30' }]] });
    expect(addrOf(await plugin({ command: 'ADD', containerId: 'x1', node: 'n' }, conf))).toBe('10.45.0.2');
    const full = await plugin({ command: 'ADD', containerId: 'x2', node: 'n' }, conf);
    expect(full.json.code).toBe(102);
    expect(full.json.msg).toContain('10.45.0.1-10.45.0.2');
    const taken = await plugin({ command: 'ADD', containerId: 'x3', node: 'n' }, { ...conf, args: { cni: { ips: ['10.45.0.2'] } } });
    expect(taken.json.code).toBe(103);
  });
});

describe('strand-ipam local store under concurrency and crashes', () => {
  it('64 concurrent plugin processes: distinct addresses; DEL leaves an empty store', async () => {
    const conf = hostLocalConf('strand-ipam', dir, { ranges: [[{ subnet: '10.46.0.0/24' }], [{ subnet: 'fd46::/64' }]] }, '1.1.0');
    const ops: Op[] = Array.from({ length: 64 }, (_, i) => ({ command: 'ADD', containerId: `p${i}`, node: 'n' }));
    const adds = await runMany(ops, conf, 8);
    expect(new Set(adds.map(addrOf)).size).toBe(64);
    const store = new LocalStore(dir);
    expect((await consistency(store, 'net-local')).problems).toEqual([]);
    const dels = await runMany(
      ops.map((o) => ({ ...o, command: 'DEL' as const })),
      conf,
      8,
    );
    expect(dels.every((r) => r.code === 0)).toBe(true);
    expect(await store.listAttachments('net-local')).toEqual([]);
    expect((await consistency(store, 'net-local')).allocated).toEqual([]);
  });

  it('processes SIGKILLed mid-ADD: the document stays valid and consistent; GC reclaims', async () => {
    const conf = hostLocalConf('strand-ipam', dir, { ranges: [[{ subnet: '10.47.0.0/24' }], [{ subnet: 'fd47::/64' }]] }, '1.1.0');
    addrOf(await plugin({ command: 'ADD', containerId: 'keep', node: 'n' }, conf));
    const kills = await Promise.all(Array.from({ length: 24 }, (_, i) => addAndKill(conf, `k${i}`, 'n', 80 + Math.floor(Math.random() * 400))));
    expect(kills.some((k) => k.signal === 'SIGKILL')).toBe(true);
    const file = join(dir, 'net-local', DOC_FILE);
    expect(() => JSON.parse(readFileSync(file, 'utf8'))).not.toThrow();
    const store = new LocalStore(dir);
    expect((await consistency(store, 'net-local')).problems).toEqual([]);
    const gc = await plugin({ command: 'GC', containerId: 'gc', node: 'n' }, gcConf(conf, [{ containerID: 'keep', ifname: 'eth0' }]));
    expect(gc.code, gc.stdout).toBe(0);
    expect((await store.listAttachments('net-local')).map((a) => a.value.containerId)).toEqual(['keep']);
    expect((await consistency(store, 'net-local')).allocated).toHaveLength(2);
    // next ADDs work after the crashes (the lock is released with the dead process)
    expect(addrOf(await plugin({ command: 'ADD', containerId: 'after', node: 'n' }, conf))).toMatch(/^10\.47\.0\./);
    // Temp files of processes killed between write and rename are removed by the next locked operation.
    expect(readdirSync(join(dir, 'net-local')).filter((f) => f.includes('.tmp.'))).toEqual([]);
  });
});
