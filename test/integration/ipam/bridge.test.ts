// The reference `bridge` plugin with strand-ipam as its IPAM, in fresh "host" and "pod"
// namespaces: the pod gets its address, reaches the gateway, DEL (twice) releases it.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetnsSet, ipJson, nsExec } from '../../helpers/netns.ts';
import { binDir, pathEnv, refBinDir } from '../../helpers/run-plugin.ts';
import { LocalStore } from '../../../ipam/store/local.ts';
import { consistency, requireBuilt } from './helpers.ts';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  json: any;
}

/** Runs a plugin inside network namespace `ns` (the "host" of the test). */
function runIn(ns: string, bin: string, env: Record<string, string>, conf: object): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, bin], {
      env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', CNI_PATH: `${binDir}:${refBinDir}`, ...pathEnv(), ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      let json: unknown;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolve({ code, stdout, stderr, json });
    });
    child.stdin.end(JSON.stringify(conf));
  });
}

describe('reference bridge plugin + strand-ipam', () => {
  let nets: NetnsSet;
  let dataDir: string;
  beforeEach(() => {
    requireBuilt();
    nets = new NetnsSet();
    dataDir = mkdtempSync(join(tmpdir(), 's4-ipam-br-'));
  });
  afterEach(() => {
    nets.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  });

  for (const cniVersion of ['0.3.1', '1.0.0']) {
    it(`pods get addresses from strand-ipam and reach the gateway (cniVersion ${cniVersion}); DEL twice releases`, async () => {
      const host = nets.add('h');
      const pods = [nets.add('p1'), nets.add('p2')];
      const conf = {
        cniVersion,
        name: 'net-br',
        type: 'bridge',
        bridge: `${nets.prefix}-br`,
        isGateway: true,
        ipam: { type: 'strand-ipam', dataDir, ranges: [[{ subnet: '10.50.0.0/24' }], [{ subnet: 'fd50::/64' }]], routes: [{ dst: '0.0.0.0/0' }] },
      };
      const env = (pod: string, id: string, command: string): Record<string, string> => ({
        CNI_COMMAND: command,
        CNI_CONTAINERID: id,
        CNI_NETNS: nets.path(pod),
        CNI_IFNAME: 'eth0',
      });
      const addrs: string[] = [];
      for (const [i, pod] of pods.entries()) {
        const r = await runIn(host, join(refBinDir, 'bridge'), env(pod, `c${i}`, 'ADD'), conf);
        expect(r.code, r.stdout + r.stderr).toBe(0);
        const v4 = (r.json.ips as Array<{ address: string }>).map((x) => x.address);
        expect(v4).toEqual([`10.50.0.${i + 2}/24`, `fd50::${i + 2}/64`]);
        addrs.push(v4[0]?.split('/')[0] as string);
        const inPod = ipJson<Array<{ addr_info: Array<{ local: string }> }>>(['addr', 'show', 'eth0'], { ns: pod });
        expect(inPod[0]?.addr_info.map((a) => a.local)).toContain(`10.50.0.${i + 2}`);
      }
      nsExec(pods[0] as string, 'ping', ['-c', '1', '-W', '2', '10.50.0.1']);
      nsExec(pods[0] as string, 'ping', ['-c', '1', '-W', '2', addrs[1] as string]);
      const store = new LocalStore(dataDir);
      expect((await consistency(store, 'net-br')).allocated.sort()).toEqual(['10.50.0.2', '10.50.0.3', 'fd50::2', 'fd50::3']);
      for (const [i, pod] of pods.entries()) {
        for (let k = 0; k < 2; k++) {
          const d = await runIn(host, join(refBinDir, 'bridge'), env(pod, `c${i}`, 'DEL'), conf);
          expect(d.code, d.stdout + d.stderr).toBe(0);
        }
      }
      expect(await store.listAttachments('net-br')).toEqual([]);
      expect((await consistency(store, 'net-br')).allocated).toEqual([]);
    });
  }
});
