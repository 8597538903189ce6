// Many pods at once, as kubelet starts them: concurrent ADDs on a bridge that does not
// exist yet (they race to create it, to put the gateway on it, to turn on forwarding),
// then concurrent DELs. Every ADD succeeds with its own address, every pod reaches the
// gateway, and nothing is left but the bridge.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ipJson, nsExec } from '../../helpers/netns.ts';
import { BridgeEnv, ok, ping, requireBinaries, STRAND_BRIDGE, type Attachment } from './harness.ts';

let env: BridgeEnv | undefined;
beforeAll(() => requireBinaries());
afterEach(() => {
  env?.cleanup();
  env = undefined;
});

describe('strand-bridge under concurrency', () => {
  it('8 concurrent ADDs on a new bridge, then 8 concurrent DELs', async () => {
    const e = new BridgeEnv();
    env = e;
    const host = e.ns.add('host');
    const pods: Attachment[] = [];
    for (let i = 0; i < 8; i++) pods.push({ podNs: e.ns.add(`p${i}`), containerId: `${e.prefix}-c${i}`, ifName: 'eth0' });
    const conf = e.conf('1.0.0', { isGateway: true, ipMasq: true });
    const results = (await Promise.all(pods.map((p) => e.run(STRAND_BRIDGE, host, 'ADD', p, conf)))).map((r, i) => ok(r, `ADD ${i}`));
    const addrs = results.map((r) => r.ips[0].address as string);
    expect(new Set(addrs).size).toBe(8);
    for (const p of pods) expect(ping(p.podNs, '10.77.0.1')).toBe(true);
    const ports = ipJson<Array<{ ifname: string; master?: string }>>(['link', 'show'], { ns: host }).filter((l) => l.master === e.bridge);
    expect(ports).toHaveLength(8);
    const masq = (): string[] =>
      nsExec(host, 'iptables-save', ['-t', 'nat'])
        .split('\n')
        .filter((l) => l.startsWith('-A POSTROUTING') && l.includes('CNI-'));
    expect(masq()).toHaveLength(8);
    for (const r of await Promise.all(pods.map((p) => e.run(STRAND_BRIDGE, host, 'DEL', p, conf)))) ok(r, 'DEL');
    expect(
      ipJson<Array<{ ifname: string }>>(['link', 'show'], { ns: host })
        .map((l) => l.ifname)
        .sort(),
    ).toEqual([e.bridge, 'lo'].sort());
    expect(e.ipamReservations()).toEqual([]);
    expect(masq()).toEqual([]);
  });
});
