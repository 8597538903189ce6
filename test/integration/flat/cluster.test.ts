// Flat mode end to end on simulated machines (cluster.ts): a switch, a router, three
// nodes whose agents take their uplink over into br0, pods by strand-bridge (isGateway
// false) + strand-ipam on one etcd. Pods are hosts of the segment: they reach each other
// and the router, the router reaches them, and nothing is routed or encapsulated.
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ipJson } from '../../helpers/netns.ts';
import { requireTools } from '../agent/cluster.ts';
import { FlatCluster, type FlatPod, nodeIp, nodeIp6, ROUTER, ROUTER6 } from './cluster.ts';

process.env['STRAND_TEST_PREFIX'] ??= 'fl';
process.env['STRAND_TEST_PORTS'] ??= '37000-37999';

const execFileP = promisify(execFile);

let cluster: FlatCluster | undefined;
beforeAll(() => requireTools());
afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

/** Pings each target from namespace `ns` (one process); returns those that never answered (3 tries). */
async function unreachable(ns: string, targets: readonly string[]): Promise<string[]> {
  const script = `for ip in ${targets.join(' ')}; do ping -n -q -c 1 -W 1 $ip >/dev/null 2>&1 || ping -n -q -c 3 -i 0.2 -W 3 $ip >/dev/null 2>&1 || echo $ip; done`;
  const { stdout } = await execFileP('ip', ['netns', 'exec', ns, 'sh', '-c', script]);
  return stdout.split('\n').filter(Boolean);
}

describe('flat mode: three nodes on one segment', () => {
  it('pods on different nodes reach each other and the router, the router reaches every pod (IPv4 and IPv6); no routes, no vxlan, the router sees the pods own MACs', async () => {
    const c = new FlatCluster({ nodes: 3, ipv6: true });
    cluster = c;
    await c.setup();
    const routerRoutes = JSON.stringify(ipJson(['route', 'show', 'table', 'all'], { ns: c.seg.rt }));
    await c.startAgents();
    for (const n of c.nodes) await c.waitReserved(n);
    for (const n of c.nodes) for (let i = 0; i < 2; i++) await c.addPod(n);
    const pods = c.pods;
    expect(new Set(pods.map((p) => p.ip)).size).toBe(6);
    for (const p of pods) expect([ROUTER, ...c.nodes.map((n) => n.ip)]).not.toContain(p.ip);
    for (const p of pods) expect([ROUTER6, ...c.nodes.map((_, i) => nodeIp6(i + 1))]).not.toContain(p.ip6);
    expect(new Set(pods.map((p) => p.ip6)).size).toBe(6);

    const failures: string[] = [];
    await Promise.all(
      pods.map(async (p: FlatPod) => {
        const others = pods.filter((q) => q.node !== p.node);
        const targets = [ROUTER, ROUTER6, ...others.map((q) => q.ip), ...others.map((q) => q.ip6 as string)];
        for (const t of await unreachable(p.ns, targets)) failures.push(`${p.node.name}/${p.ip} -> ${t}`);
      }),
    );
    for (const t of await unreachable(
      c.seg.rt,
      pods.map((p) => p.ip),
    ))
      failures.push(`router -> ${t}`);
    expect(failures).toEqual([]);

    // the router learned every pod's own MAC by ARP and ND (no proxy, no node MAC in between)
    const neigh = ipJson<Array<{ dst: string; lladdr?: string }>>(['neigh', 'show', 'dev', 'eth0'], { ns: c.seg.rt });
    for (const p of pods) {
      expect(neigh.find((x) => x.dst === p.ip)?.lladdr, p.ip).toBe(p.mac);
      expect(neigh.find((x) => x.dst === p.ip6)?.lladdr, p.ip6).toBe(p.mac);
    }
    // nothing was added on the router
    expect(JSON.stringify(ipJson(['route', 'show', 'table', 'all'], { ns: c.seg.rt }))).toBe(routerRoutes);
    for (const n of c.nodes) {
      // no encapsulation device, no routes of the agent, no proxy ARP on the bridge
      const kinds = ipJson<Array<{ ifname: string; linkinfo?: { info_kind?: string } }>>(['-d', 'link', 'show'], { ns: n.ns }).map(
        (l) => l.linkinfo?.info_kind ?? '',
      );
      expect(kinds).not.toContain('vxlan');
      expect(ipJson(['route', 'show', 'proto', '115', 'table', 'all'], { ns: n.ns })).toEqual([]);
      const main = ipJson<Array<{ dst: string; gateway?: string; dev: string }>>(['-4', 'route', 'show'], { ns: n.ns }).map(
        (r) => `${r.dst}${r.gateway ? ` via ${r.gateway}` : ''} dev ${r.dev}`,
      );
      expect(main).toEqual([`default via ${ROUTER} dev br0`, '192.168.77.0/24 dev br0']);
      const s = c.state(n) as { mode: string; routes: unknown[]; podLinks: unknown[]; addresses: string[] };
      expect(s).toMatchObject({ mode: 'flat', routes: [], podLinks: [], addresses: [n.ip, nodeIp6(c.nodes.indexOf(n) + 1)] });
      expect((s as { flat?: { reserved?: string[] } }).flat?.reserved).toEqual([n.ip, nodeIp6(c.nodes.indexOf(n) + 1)]);
      // strand-bridge ADD turned accept_ra off on br0 (as the reference does); the agent puts the uplink's back
      const ra = (l: string): string =>
        execFileSync('ip', ['netns', 'exec', n.ns, 'sysctl', '-n', `net.ipv6.conf.${l}.accept_ra`], { encoding: 'utf8' }).trim();
      const deadline = Date.now() + 10_000;
      while (ra('br0') !== ra('eth1') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(ra('br0')).toBe(ra('eth1'));
      // alive and ready like any agent, nothing to report, and the pods' MTU is the uplink's
      const get = (path: string): string =>
        execFileSync('ip', ['netns', 'exec', n.ns, 'curl', '-sS', '--max-time', '5', `http://127.0.0.1:9476${path}`], { encoding: 'utf8' });
      expect(get('/healthz').trim()).toBe('ok');
      expect(get('/readyz').trim()).toBe('ok');
      const metrics = get('/metrics');
      expect(metrics).toMatch(/^strand_agent_synced 1$/m);
      expect(metrics).toMatch(/^strand_agent_pod_mtu 1500$/m);
      expect(readFileSync(n.podMtuFile, 'utf8')).toBe('1500\n');
      expect((c.state(n) as { problems: string[] }).problems).toEqual([]);
      // the pods' default route is the router, not the node
      for (const p of pods.filter((q) => q.node === n)) {
        expect(ipJson<Array<{ dst: string; gateway?: string }>>(['-4', 'route', 'show', 'default'], { ns: p.ns })[0]?.gateway).toBe(ROUTER);
        expect(ipJson<Array<{ dst: string; gateway?: string }>>(['-6', 'route', 'show', 'default'], { ns: p.ns })[0]?.gateway).toBe(ROUTER6);
      }
    }
  });
});

describe('flat mode: IPAM of the shared subnet', () => {
  it('300 pods across 3 nodes on a /24, router and nodes reserved: no duplicates, no reserved address used, then code 102', async () => {
    // the router: the range's gateway and a store reservation; an appliance: exclude in the range
    const c = new FlatCluster({ nodes: 3, range: { subnet: '192.168.77.0/24', gateway: ROUTER, exclude: ['192.168.77.250/31'] } });
    cluster = c;
    await c.setup();
    await c.startAgents();
    expect(await c.ipamCli(['reserve', ROUTER, '--note', 'router'])).toMatch(/reserved/);
    // the agents reserved their nodes' addresses
    for (const n of c.nodes) {
      expect(await c.waitReserved(n)).toEqual([n.ip]);
      // (exit 1: no attachment holds it)
      expect(await c.ipamCli(['show', n.ip], [1])).toMatch(new RegExp(`reservation ${n.ip.replaceAll('.', '\\.')}/32 "node ${n.name}`));
    }
    const got: string[] = [];
    const refused: Array<{ code: number | null; out: Record<string, unknown> }> = [];
    const t0 = Date.now();
    await Promise.all(
      c.nodes.map(async (n) => {
        for (let i = 0; i < 100; i++) {
          const r = await c.ipamAdd(n, `${c.seg.prefix}-${n.name}-${i}`);
          const ip = (r.out['ips'] as Array<{ address: string }> | undefined)?.[0]?.address;
          if (r.code === 0 && ip) got.push(ip.split('/')[0] as string);
          else refused.push(r);
        }
      }),
    );
    console.log(
      `[flat] 300 strand-ipam ADDs from 3 nodes (100 each, nodes in parallel) in ${Date.now() - t0} ms: ${got.length} allocated, ${refused.length} refused`,
    );
    // 254 usable: the router, 3 nodes and 2 excluded are never handed out
    expect(got).toHaveLength(248);
    expect(new Set(got).size).toBe(248);
    for (const r of [ROUTER, nodeIp(1), nodeIp(2), nodeIp(3), '192.168.77.250', '192.168.77.251']) expect(got).not.toContain(r);
    expect(refused).toHaveLength(52);
    for (const r of refused) {
      expect(r.code).toBe(1);
      expect(r.out).toMatchObject({ code: 102 });
      expect(String(r.out['msg'])).toContain('192.168.77.1-192.168.77.254');
    }
    const attachments = JSON.parse(await c.ipamCli(['ls', '--json'])) as unknown[];
    expect(attachments).toHaveLength(248);
    // a pod's ADD through strand-bridge then fails with the IPAM's code, leaving nothing behind
    const n1 = c.nodes[0] as (typeof c.nodes)[0];
    const linksBefore = ipJson<unknown[]>(['link', 'show'], { ns: n1.ns }).length;
    const add = await c.runAdd(n1);
    expect(add.code).toBe(1);
    expect(JSON.parse(add.stdout)).toMatchObject({ code: 102 });
    expect(ipJson<unknown[]>(['link', 'show'], { ns: n1.ns }).length).toBe(linksBefore);
    expect(ipJson<unknown[]>(['link', 'show'], { ns: add.ns })).toHaveLength(1);
  });
});
