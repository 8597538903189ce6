// Fail fast, bounded (issue #14 item 8), with the built strand-bridge and its in-process
// strand-ipam on etcd, over both transports: with every etcd endpoint refusing
// connections, ADD answers code 11 within 1 s (median of 10); with etcd hung (SIGSTOP),
// within requestTimeout + 1 s, the rollback DEL's IPAM part included (the call's
// deadline is shared by every step). Either way the failed ADD leaves no link behind.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freePort } from '../../helpers/etcd.ts';
import { ipJson, NetnsSet } from '../../helpers/netns.ts';
import { binDir, refBinDir } from '../../helpers/run-plugin.ts';
import { runIn, SimEtcd } from '../agent/cluster.ts';
import { PENDING_DIR } from '../../../ipam/pending.ts';
import { requireBuilt } from './helpers.ts';

const BRIDGE = join(binDir, 'strand-bridge');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

describe('fail fast, bounded', () => {
  let etcd: SimEtcd;
  let nets: NetnsSet;
  let dir: string;
  let host: string;
  let pod: string;
  let stopped = false;
  beforeAll(async () => {
    requireBuilt();
    etcd = await SimEtcd.create();
  });
  afterAll(async () => {
    await etcd?.destroy();
  });
  beforeEach(() => {
    nets = new NetnsSet();
    dir = mkdtempSync(join(tmpdir(), `${nets.prefix}-ff-`));
    host = nets.add('h');
    pod = nets.add('p');
  });
  afterEach(() => {
    if (stopped) etcd.proc?.kill('SIGCONT');
    stopped = false;
    nets.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  function conf(etcdSection: Record<string, unknown>): Record<string, unknown> {
    return {
      cniVersion: '1.1.0',
      name: 'lfff',
      type: 'strand-bridge',
      bridge: `${nets.prefix}-br`,
      isGateway: true,
      ipam: { type: 'strand-ipam', nodeName: 'nA', dataDir: dir, ranges: [[{ subnet: '10.91.0.0/16' }]], etcd: etcdSection },
    };
  }

  async function add(id: string, c: Record<string, unknown>, podNs = pod): Promise<{ ms: number; code: number | undefined; out: string }> {
    const t0 = Date.now();
    const r = await runIn(
      host,
      BRIDGE,
      { CNI_COMMAND: 'ADD', CNI_CONTAINERID: id, CNI_NETNS: nets.path(podNs), CNI_IFNAME: 'eth0', CNI_PATH: `${binDir}:${refBinDir}` },
      JSON.stringify(c),
    );
    const ms = Date.now() - t0;
    let code: number | undefined;
    try {
      code = (JSON.parse(r.stdout) as { code?: number }).code;
    } catch {
      code = undefined;
    }
    return { ms, code, out: r.stdout + r.stderr };
  }

  function leftovers(): string[] {
    const inPod = ipJson<Array<{ ifname: string }>>(['link', 'show'], { ns: pod }).filter((l) => l.ifname !== 'lo');
    const ports = ipJson<Array<{ ifname: string; master?: string }>>(['link', 'show'], { ns: host }).filter((l) => l.master !== undefined);
    return [...inPod, ...ports].map((l) => l.ifname);
  }

  for (const transport of ['http', 'grpc'] as const) {
    it(`every endpoint refusing (${transport}): ADD answers 11 within 1 s (median of 10) and leaves no link`, async () => {
      const c = conf({ endpoints: [`http://127.0.0.1:${await freePort()}`, `unix:${join(dir, 'no-etcd.sock')}`], prefix: '/lfff', transport });
      const times: number[] = [];
      for (let i = 0; i < 10; i++) {
        const r = await add(`${nets.prefix}-r${i}`, c);
        expect(r.code, r.out).toBe(11);
        times.push(r.ms);
      }
      expect(median(times), `ADD wall times ${times.join(', ')} ms`).toBeLessThanOrEqual(1000);
      expect(leftovers()).toEqual([]);
    });

    it(`etcd hung (SIGSTOP, ${transport}): ADD answers 11 within requestTimeout + 1 s, its rollback included`, async () => {
      const requestTimeout = 2000;
      const c = conf({ endpoints: [etcd.unixEndpoint], prefix: `/${nets.prefix}`, transport, requestTimeout, dialTimeout: 2000 });
      // warm: the store works before it hangs
      const ok = await add(`${nets.prefix}-ok`, c, nets.add('w'));
      expect(ok.code, ok.out).toBeUndefined();
      etcd.proc?.kill('SIGSTOP');
      stopped = true;
      const times: number[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await add(`${nets.prefix}-s${i}`, c);
        expect(r.code, r.out).toBe(11);
        times.push(r.ms);
      }
      expect(median(times), `ADD wall times ${times.join(', ')} ms`).toBeLessThanOrEqual(requestTimeout + 1000);
      // the rollback DEL found no time left and recorded its release for later
      expect(readdirSync(join(dir, PENDING_DIR)).filter((n) => n.endsWith('.json'))).toHaveLength(3);
      expect(leftovers()).toHaveLength(1); // the working pod's host veth, nothing of the failed ADDs
    });
  }
});
