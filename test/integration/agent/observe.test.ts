// The agent's metrics and health listener (lib/observe, docs/metrics.md): the built
// agent on a simulated cluster answers curl on /metrics with every documented series,
// /healthz and /readyz follow its state (etcd down: not ready but alive; stopped process:
// no answer); an agent run in this process with a data plane that hangs fails /healthz.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../../agent/agent.ts';
import { parseAgentConfig } from '../../../agent/config.ts';
import { Dataplane, type ApplyReport } from '../../../agent/dataplane.ts';
import type { Op } from '../../../agent/reconcile.ts';
import { createLogger } from '../../../lib/cni/log.ts';
import { Netns } from '../../../lib/netlink/netns.ts';
import { StrandMetrics } from '../../../lib/observe/metrics.ts';
import { startObserveServer, type ObserveServer } from '../../../lib/observe/server.ts';
import { freePort } from '../../helpers/etcd.ts';
import { repoRoot } from '../../helpers/run-plugin.ts';
import { requireTools, SimCluster } from './cluster.ts';

process.env['STRAND_TEST_PREFIX'] ??= 's9';
process.env['STRAND_TEST_PORTS'] ??= '25000-25999';

const execFileP = promisify(execFile);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let cluster: SimCluster | undefined;
const cleanups: Array<() => Promise<void> | void> = [];
beforeAll(() => requireTools());
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await cluster?.destroy();
  cluster = undefined;
});

interface Answer {
  status: number;
  body: string;
}

/** curl inside a namespace (or here); status 0 when curl got no answer within maxTimeS. */
async function curl(ns: string | undefined, url: string, maxTimeS = 5): Promise<Answer> {
  const args = ['-s', '-o', '-', '-w', '\n%{http_code}', '--max-time', String(maxTimeS), url];
  const cmd = ns ? ['ip', ['netns', 'exec', ns, 'curl', ...args]] : ['curl', args];
  const out = await execFileP(cmd[0] as string, cmd[1] as string[]).then(
    (r) => r.stdout,
    (e: { stdout?: string }) => e.stdout ?? '',
  );
  const nl = out.lastIndexOf('\n');
  return { status: Number(out.slice(nl + 1)) || 0, body: out.slice(0, Math.max(0, nl)).replace(/\n$/, '') };
}

/** Every series name in docs/metrics.md's tables (first column, backquoted). */
function documentedSeries(): string[] {
  const doc = readFileSync(join(repoRoot, 'docs', 'metrics.md'), 'utf8');
  return [...doc.matchAll(/^\| `([a-z_]+)` \| (?:counter|gauge|histogram) \|/gm)].map((m) => m[1] as string);
}

/** name{labels} -> value, from the text exposition. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

async function waitFor(what: string, pred: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe('strand agent: /metrics, /healthz, /readyz', () => {
  it('the built agent serves every documented series on 127.0.0.1:9476 (curl), health and readiness follow its state', async () => {
    const c = new SimCluster({ mode: 'vxlan', nodes: 2 });
    cluster = c;
    await c.setup();
    await c.startAgents();
    const [n1, n2] = c.nodes as [(typeof c.nodes)[0], (typeof c.nodes)[0]];
    await c.addPod(n1);
    await c.addPod(n1);
    await c.addPod(n2);
    await c.waitConverged();
    const base = 'http://127.0.0.1:9476';

    const m = await curl(n1.ns, `${base}/metrics`);
    expect(m.status).toBe(200);
    const types = new Set([...m.body.matchAll(/^# TYPE (\S+) /gm)].map((x) => x[1]));
    const documented = documentedSeries();
    expect(documented.length).toBeGreaterThan(30);
    expect(documented.filter((name) => !types.has(name))).toEqual([]);
    // and what they say is this node's state
    await waitFor('the usage of the last ADD in the metrics', async () => {
      const s = samples((await curl(n1.ns, `${base}/metrics`)).body);
      return s.get('strand_ipam_node_allocated_addresses{network="s9net",node="n1"}') === 2;
    });
    const s = samples((await curl(n1.ns, `${base}/metrics`)).body);
    expect(s.get('strand_agent_synced')).toBe(1);
    expect(s.get('strand_agent_routes{kind="block"}')).toBe(1);
    expect(s.get('strand_agent_vxlan_fdb_entries')).toBe(1);
    expect(s.get('strand_agent_vxlan_neighbour_entries')).toBe(1);
    expect(s.get('strand_agent_peers{state="alive"}')).toBe(1);
    expect(s.get('strand_agent_pod_mtu')).toBe(1450);
    expect(s.get('strand_ipam_node_blocks{network="s9net",node="n1"}')).toBe(1);
    expect(s.get('strand_ipam_node_block_addresses{network="s9net",node="n1"}')).toBe(64);
    expect(s.get('strand_ipam_pool_blocks{network="s9net"}')).toBe(2);
    expect(s.get('strand_ipam_pool_allocated_addresses{network="s9net"}')).toBe(3);
    expect(s.get('strand_etcd_request_duration_seconds_count{op="list"}')).toBeGreaterThanOrEqual(1);
    expect(s.get('strand_agent_dataplane_changes_total{object="route",action="add"}')).toBeGreaterThanOrEqual(1);
    expect(s.get('strand_agent_reconcile_last_success_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 60);
    expect(s.get('process_open_fds')).toBeGreaterThan(5);
    expect(s.get('process_resident_memory_bytes')).toBeGreaterThan(10 * 1024 * 1024);
    // the request series exist but stay empty in the agent
    expect([...s.keys()].filter((k) => k.startsWith('strand_cni_') || k.startsWith('strand_ipam_operations'))).toEqual([]);

    expect(await curl(n1.ns, `${base}/healthz`)).toEqual({ status: 200, body: 'ok' });
    expect(await curl(n1.ns, `${base}/readyz`)).toEqual({ status: 200, body: 'ok' });
    expect((await curl(n1.ns, `${base}/nothing`)).status).toBe(404);
    // loopback only: the node's own address does not answer
    expect((await curl(n1.ns, `http://${n1.ip}:9476/healthz`, 2)).status).toBe(0);

    // etcd down: not ready (the reason says so), still alive
    await c.etcd.stop();
    await waitFor('/readyz to fail', async () => (await curl(n1.ns, `${base}/readyz`)).status === 503);
    expect((await curl(n1.ns, `${base}/readyz`)).body).toMatch(/^not ready: not synced with etcd/);
    expect((await curl(n1.ns, `${base}/healthz`)).status).toBe(200);
    await c.etcd.start();
    await waitFor('/readyz to pass again', async () => (await curl(n1.ns, `${base}/readyz`)).status === 200, 30_000);

    // a stopped process (its event loop cannot run) does not answer: the probe times out
    const pid = n1.agent?.pid as number;
    process.kill(pid, 'SIGSTOP');
    try {
      expect(await curl(n1.ns, `${base}/healthz`, 2)).toEqual({ status: 0, body: '' });
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    expect((await curl(n1.ns, `${base}/healthz`)).status).toBe(200);
  });

  it('a reconcile pass that hangs fails /healthz until it ends (an agent in this process)', async () => {
    const c = new SimCluster({ mode: 'host-gw', nodes: 2 });
    cluster = c;
    await c.setup();
    const [n1, n2] = c.nodes as [(typeof c.nodes)[0], (typeof c.nodes)[0]];
    c.startAgent(n2);
    await c.waitSynced(n2);

    // n1's agent runs here, in n1's namespace through a namespace handle, with a data
    // plane whose apply() can be made to hang (the kernel never answering)
    const ns = Netns.open(`/run/netns/${n1.ns}`);
    cleanups.push(() => ns.close());
    let hang: (() => void) | undefined;
    class HangingDataplane extends Dataplane {
      hanging = false;
      override async apply(ops: readonly Op[]): Promise<ApplyReport> {
        if (this.hanging) {
          await new Promise<void>((resolve) => {
            hang = resolve;
          });
        }
        return super.apply(ops);
      }
    }
    const cfg = parseAgentConfig(
      {
        nodeName: n1.name,
        nodeIP: n1.ip,
        networks: [c.opts.network],
        etcd: { endpoints: [c.etcd.unixEndpoint], prefix: c.etcdPrefix },
        leaseTTL: '10s',
        resyncInterval: '500ms',
        stateFile: join(c.dir, 'inproc.json'),
        podMtuFile: join(c.dir, 'inproc.mtu'),
        reconcileStuckAfter: '1s',
      },
      {},
    );
    const stderr: string[] = [];
    const log = createLogger({ name: 'strand-agent', stderr: { write: (x) => void stderr.push(x) }, level: 'info' });
    const dp = new HangingDataplane(ns, { protocol: cfg.routeProtocol, mode: cfg.mode });
    const metrics = new StrandMetrics({ defaultMetrics: false });
    const agent = new Agent(cfg, { ns, log, metrics, dataplane: dp });
    const server: ObserveServer = await startObserveServer({ host: '127.0.0.1', port: await freePort() }, agent.observeSources(), log);
    cleanups.push(() => server.close());
    cleanups.push(() => agent.stop());
    await agent.start();
    await waitFor('the in-process agent to sync', () => agent.state.synced);
    const base = `http://127.0.0.1:${server.address.port}`;
    expect(await curl(undefined, `${base}/healthz`)).toEqual({ status: 200, body: 'ok' });

    // the next pass hangs in apply(): after reconcileStuckAfter (1 s) /healthz says so,
    // while the event loop (and /readyz, /metrics) keep answering
    dp.hanging = true;
    await c.addPod(n2); // a new block: a watch event, a pass with a route to add
    await waitFor('/healthz to fail', async () => (await curl(undefined, `${base}/healthz`)).status === 503, 15_000);
    const bad = await curl(undefined, `${base}/healthz`);
    expect(bad.body).toMatch(/^unhealthy: reconcile loop: a pass has been running for \d+\.\d s \(limit 1 s\)$/);
    expect((await curl(undefined, `${base}/metrics`)).status).toBe(200);
    expect(stderr.join('')).toContain('liveness check failed: reconcile loop');

    // the kernel answers again: the pass ends, the route is there, /healthz passes
    dp.hanging = false;
    hang?.();
    await waitFor('/healthz to pass again', async () => (await curl(undefined, `${base}/healthz`)).status === 200);
    await c.waitRoutes(n1, (r) => r.size === 1);
  });
});
