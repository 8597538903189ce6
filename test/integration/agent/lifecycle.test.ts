// Node lifecycle, the automatic path (issue #14 item 5): agents release the empty blocks
// and the record of a node whose agent has been gone longer than nodeReleaseAfter, and
// the peers drop their routes to it; a gone node that still holds a pod is reported (log
// and metric), its block kept and routed. Simulated cluster: cluster.ts.
import { execFileSync } from 'node:child_process';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireTools, SimCluster, STRAND_BIN } from './cluster.ts';

process.env['STRAND_TEST_PREFIX'] ??= 's9';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let cluster: SimCluster | undefined;
beforeAll(() => requireTools());
afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

describe('gone nodes', () => {
  it("the agents release a gone node's empty block and record after nodeReleaseAfter; a gone node with a pod is reported, not emptied", async () => {
    const c = new SimCluster({ mode: 'host-gw', nodes: 3, leaseTTL: '2s', resync: '1s' });
    cluster = c;
    await c.setup();
    for (const n of c.nodes) c.startAgent(n, ['--node-release-after=3s']);
    for (const n of c.nodes) await c.waitSynced(n);
    const [n1, n2, n3] = c.nodes as [(typeof c.nodes)[0], (typeof c.nodes)[0], (typeof c.nodes)[0]];
    const p1 = await c.addPod(n1);
    const p2 = await c.addPod(n2);
    const p3 = await c.addPod(n3);
    await c.waitConverged();
    const block3 = [...c.routes(n1).keys()].find((d) => c.routes(n1).get(d)?.gateway === n3.ip) as string;
    const block2 = [...c.routes(n1).keys()].find((d) => c.routes(n1).get(d)?.gateway === n2.ip) as string;
    expect(block3).toBeDefined();
    // n3's last pod goes: its (last) block stays, empty, and so does the route to it
    await c.delPod(p3);
    await sleep(1500);
    expect(c.routes(n1).has(block3)).toBe(true);

    // n3 and n2 leave (their agents stop and do not come back); n2 still has its pod
    await c.stopAgent(n3, 'SIGTERM');
    await c.stopAgent(n2, 'SIGKILL');
    const t0 = Date.now();
    const ms = await c.waitRoutes(n1, (r) => !r.has(block3), 30_000);
    console.log(`n3's block route gone from n1 ${Date.now() - t0} ms after its agent stopped (lease 2 s, nodeReleaseAfter 3 s, resync 1 s)`);
    expect(ms).toBeGreaterThan(3000); // not before the lease expired and the grace period passed
    const keys = c.etcd
      .etcdctl(['get', '--prefix', `${c.etcdPrefix}/`, '--keys-only'])
      .split('\n')
      .filter(Boolean);
    expect(keys.filter((k) => k.endsWith('/n3') || k.includes(block3.replace('/', '-')))).toEqual([]);
    // n2 is reported, not emptied: its block stays routed, its pod's address held
    expect(c.routes(n1).get(block2)?.gateway).toBe(n2.ip);
    for (let i = 0; !c.agentLog(n1).includes('node n2'); i++) {
      if (i > 200) throw new Error(`n1 never reported n2:\n${c.agentLog(n1)}`);
      await sleep(50);
    }
    expect(c.agentLog(n1)).toMatch(
      new RegExp(`node n2 \\(no agent for \\d+ s\\) still holds 1 attachment\\(s\\): s9net ${p2.containerId}/eth0: ${p2.ip.replace(/\./g, '\\.')}`),
    );
    expect(c.agentLog(n1)).toMatch(/node n3 \(no agent for \d+ s\): released; its record .*\/nodes\/n3 removed/);
    const metrics = execFileSync('ip', ['netns', 'exec', n1.ns, 'curl', '-s', 'http://127.0.0.1:9476/metrics'], { encoding: 'utf8' });
    expect(metrics).toMatch(/^strand_agent_gone_node_attachments\{node="n2"\} 1$/m);
    expect(metrics).toMatch(/^strand_agent_node_releases_total\{result="released"\} 1$/m);
    const nodes = JSON.parse(
      execFileSync(STRAND_BIN, ['ipam', '--etcd-endpoints', c.etcd.tcpEndpoint, '--etcd-prefix', c.etcdPrefix, '--json', 'node', 'ls'], { encoding: 'utf8' }),
    ) as Array<{ name: string; alive: boolean; attachments: number }>;
    expect(nodes.map((n) => [n.name, n.alive, n.attachments])).toEqual([
      ['n1', true, 1],
      ['n2', false, 1],
    ]);
    // pod to pod on the nodes that remain still works
    expect(await c.unreachable(p1, [p2.ip])).toEqual([]);
  });
});
