// The chaos engine behind `npm run chaos` (scripts/chaos.ts) and its bounded CI form
// (test/integration/chaos/chaos.test.ts).
//
// A 3-member etcd on loopback (and unix sockets, which work from any namespace); N simulated nodes, each a network namespace in which the
// built strand-bridge (+ strand-ipam on that etcd, nodeName = the node) runs exactly as
// a runtime runs it; pods churn on every node (ADD, hold, DEL) while the engine
//   - kills the etcd leader, kills a random member, and restarts them,
//   - SIGKILLs plugin processes at random points of ADD and DEL (sometimes only the
//     plugin, so its IPAM child finishes alone; sometimes the whole process group),
//   - after some killed ADDs drops the pod's namespace and never calls DEL (a runtime
//     that lost track of it: only GC can reclaim the address),
//   - allocates addresses through strand-ipam directly for containers that never get an
//     interface (the same, without any kernel trace).
// Afterwards, with etcd whole again: pending DELs are retried; GC runs on every node
// with the live pods as `cni.dev/valid-attachments`; then the checks:
//   - no address was ever handed to two attachments at once (every successful ADD is
//     checked against the addresses held by attachments whose DEL was never attempted),
//   - the store lists exactly the live pods with exactly their addresses (nothing
//     leaked), `strand ipam gc` (repair) finds nothing to repair, block usage agrees,
//   - the kernel agrees: live pods have their address, unique; no veth or route beyond
//     the live pods on any node; other pod namespaces hold only lo,
// and finally every live pod is deleted and the store and namespaces must be empty.
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ChaosEtcd } from './etcd-cluster.ts';
import { binDir } from '../helpers/run-plugin.ts';

export interface ChaosOptions {
  nodes: number;
  slotsPerNode: number;
  durationMs: number;
  /** Probability that an ADD or DEL invocation is SIGKILLed at a random point. */
  killProbability: number;
  /** Probability that a killed ADD is then abandoned (namespace gone, no DEL). */
  orphanProbability: number;
  /** Kill/restart etcd members during the run. */
  etcdChaos: boolean;
  seed: number;
  /** Test tag for names (2-3 letters). */
  tag: string;
  /** Ports for etcd (STRAND_TEST_PORTS form). */
  ports: string;
  log: (s: string) => void;
}

export const DEFAULTS: ChaosOptions = {
  nodes: 8,
  slotsPerNode: 2,
  durationMs: 120_000,
  killProbability: 0.15,
  orphanProbability: 0.4,
  etcdChaos: true,
  seed: 1,
  tag: 'sa',
  ports: process.env['STRAND_TEST_PORTS'] ?? '26000-26999',
  log: (s) => process.stderr.write(`${s}\n`),
};

export interface ChaosReport {
  seed: number;
  prefix: string;
  adds: { ok: number; failed: number; killed: number; codes: Record<string, number> };
  dels: { ok: number; failed: number; killed: number; codes: Record<string, number> };
  orphansByKill: number;
  orphansIpamOnly: number;
  gcReleased: string[];
  events: string[];
  /** Successful ADDs after the last etcd event (allocations continue). */
  addsAfterLastEvent: number;
  live: number;
  violations: string[];
  seconds: number;
}

// ---------------------------------------------------------------------------------

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function ipJson<T>(args: string[]): T {
  const out = ip(['-j', ...args]).trim();
  return (out ? JSON.parse(out) : []) as T;
}

interface Invocation {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  killed: boolean;
  ms: number;
}

interface Attachment {
  cid: string;
  node: number;
  podNs: string;
  ip?: string;
  state: 'up' | 'deleting' | 'deleted' | 'orphan' | 'pending';
}

export async function runChaos(opts: Partial<ChaosOptions> = {}): Promise<ChaosReport> {
  const o: ChaosOptions = { ...DEFAULTS, ...opts };
  const rnd = mulberry32(o.seed);
  const t0 = Date.now();
  const p = `${o.tag.slice(0, 3)}${randomBytes(2).toString('hex')}`;
  const net = `chaos-${p}`;
  const prefix = `/chaos-${p}`;
  const report: ChaosReport = {
    seed: o.seed,
    prefix: p,
    adds: { ok: 0, failed: 0, killed: 0, codes: {} },
    dels: { ok: 0, failed: 0, killed: 0, codes: {} },
    orphansByKill: 0,
    orphansIpamOnly: 0,
    gcReleased: [],
    events: [],
    addsAfterLastEvent: 0,
    live: 0,
    violations: [],
    seconds: 0,
  };
  const violation = (s: string): void => {
    report.violations.push(s);
    o.log(`VIOLATION ${s}`);
  };
  const bridgeExe = join(binDir, 'strand-bridge');
  const ipamExe = join(binDir, 'strand-ipam');
  const strandExe = join(binDir, 'strand');
  for (const f of [bridgeExe, ipamExe, strandExe]) if (!existsSync(f)) throw new Error(`${f} missing: run scripts/build.sh`);

  process.env['STRAND_TEST_PORTS'] = o.ports;
  const cluster = await ChaosEtcd.start(3);
  const nodeNs = Array.from({ length: o.nodes }, (_, i) => `${p}-n${i}`);
  const made = new Set<string>();
  const children = new Set<number>();
  const addNs = (name: string): void => {
    ip(['netns', 'add', name]);
    made.add(name);
    ip(['-n', name, 'link', 'set', 'lo', 'up']);
  };
  const delNs = (name: string): void => {
    try {
      ip(['netns', 'del', name]);
    } catch {
      // gone
    }
    made.delete(name);
  };

  const conf = (node: number, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    cniVersion: '1.1.0',
    name: net,
    type: 'strand-bridge',
    bridge: 'cb0',
    isGateway: true,
    ipam: {
      type: 'strand-ipam',
      nodeName: `node-${node}`,
      ranges: [[{ subnet: '10.200.0.0/16' }]],
      etcd: { endpoints: cluster.endpoints, prefix, dialTimeout: '2s', requestTimeout: '4s' },
    },
    ...extra,
  });

  let typicalMs = 400;
  const durations: number[] = [];
  /** Runs a plugin in a node namespace; may SIGKILL it at a random point. */
  const invoke = (exe: string, node: number, env: Record<string, string>, stdin: object, mayKill: boolean): Promise<Invocation> => {
    const start = Date.now();
    return new Promise((resolve) => {
      const child = spawn('nsenter', [`--net=/run/netns/${nodeNs[node]}`, '--', exe], {
        env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', CNI_PATH: binDir, ...env },
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true,
      });
      const pid = child.pid ?? -1;
      children.add(pid);
      let killed = false;
      let timer: NodeJS.Timeout | undefined;
      if (mayKill && rnd() < o.killProbability) {
        const wholeGroup = rnd() < 0.5;
        timer = setTimeout(
          () => {
            killed = true;
            try {
              process.kill(wholeGroup ? -pid : pid, 'SIGKILL');
            } catch {
              // already done
            }
          },
          rnd() * typicalMs * 1.2,
        );
      }
      const hard = setTimeout(() => {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // gone
        }
      }, 120_000);
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        if (stderr.length < 4000) stderr += d;
      });
      child.on('close', (code, signal) => {
        if (timer) clearTimeout(timer);
        clearTimeout(hard);
        children.delete(pid);
        const ms = Date.now() - start;
        if (!killed && code === 0) {
          durations.push(ms);
          if (durations.length % 10 === 0) typicalMs = [...durations].sort((a, b) => a - b)[durations.length >> 1]!;
        }
        resolve({ code, signal, stdout, stderr, killed: killed && signal === 'SIGKILL', ms });
      });
      child.stdin.on('error', () => {});
      child.stdin.end(JSON.stringify(stdin));
    });
  };

  const codeOf = (r: Invocation): string => {
    if (r.killed) return 'killed';
    try {
      return String((JSON.parse(r.stdout) as { code?: number }).code ?? `exit${r.code}`);
    } catch {
      return `exit${r.code}${r.signal ? `/${r.signal}` : ''}`;
    }
  };

  const held = new Map<string, Attachment>(); // ip -> attachment whose DEL was never attempted
  const all: Attachment[] = [];
  let lastEventAt = 0;
  const addTimes: number[] = [];
  let stopping = false;

  const cniEnv = (command: string, a: Attachment): Record<string, string> => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: a.cid,
    CNI_NETNS: `/run/netns/${a.podNs}`,
    CNI_IFNAME: 'eth0',
  });

  /** DEL until it succeeds (a runtime retries DEL); false when time ran out. */
  const del = async (a: Attachment, mayKill: boolean, deadline: number): Promise<boolean> => {
    if (a.state === 'up') a.state = 'deleting';
    for (let attempt = 0; Date.now() < deadline; attempt++) {
      const r = await invoke(bridgeExe, a.node, cniEnv('DEL', a), conf(a.node), mayKill && !stopping);
      const c = codeOf(r);
      if (r.code === 0 && !r.killed) {
        report.dels.ok++;
        a.state = 'deleted';
        if (a.ip && held.get(a.ip) === a) held.delete(a.ip);
        return true;
      }
      if (r.killed) report.dels.killed++;
      else report.dels.failed++;
      report.dels.codes[c] = (report.dels.codes[c] ?? 0) + 1;
      if (!r.killed && c !== '11') o.log(`DEL ${a.cid} failed (${c}): ${r.stdout.slice(0, 300)}`);
      await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 4)));
    }
    a.state = 'pending';
    return false;
  };

  /** One pod slot on one node: ADD, hold, DEL, again, until the deadline. */
  const slot = async (node: number, s: number, deadline: number): Promise<void> => {
    const podNs = `${p}-n${node}p${s}`;
    addNs(podNs);
    for (let seq = 0; Date.now() < deadline; seq++) {
      const a: Attachment = { cid: `chaos-${p}-${node}-${s}-${seq}`, node, podNs, state: 'deleting' };
      all.push(a);
      const r = await invoke(bridgeExe, node, cniEnv('ADD', a), conf(node), true);
      if (r.code === 0 && !r.killed) {
        const res = JSON.parse(r.stdout) as { ips?: Array<{ address: string }> };
        const addr = res.ips?.[0]?.address.split('/')[0];
        if (!addr) {
          violation(`ADD ${a.cid} succeeded without an address: ${r.stdout.slice(0, 300)}`);
        } else {
          const other = held.get(addr);
          if (other && other.state === 'up') violation(`duplicate address ${addr}: ${a.cid} while ${other.cid} holds it (its DEL never attempted)`);
          a.ip = addr;
          a.state = 'up';
          held.set(addr, a);
        }
        report.adds.ok++;
        addTimes.push(Date.now());
        // Pods started in the last fifth of the run stay up: the live set GC must keep.
        if (Date.now() >= deadline - o.durationMs / 5) return;
        await sleep(rnd() * 500);
      } else {
        const c = codeOf(r);
        if (r.killed) report.adds.killed++;
        else report.adds.failed++;
        report.adds.codes[c] = (report.adds.codes[c] ?? 0) + 1;
        if (!r.killed && c !== '11') o.log(`ADD ${a.cid} failed (${c}): ${r.stdout.slice(0, 300)}`);
        if (r.killed && rnd() < o.orphanProbability) {
          // The runtime lost this sandbox: the namespace goes (and the veth with it), no DEL.
          a.state = 'orphan';
          report.orphansByKill++;
          delNs(podNs);
          addNs(podNs);
          continue;
        }
      }
      // After a failed ADD, as after a finished pod, the runtime calls DEL.
      if (!(await del(a, true, deadline + 20_000))) o.log(`DEL ${a.cid} still pending at the deadline`);
      // A fresh sandbox for the next pod of this slot.
      delNs(podNs);
      addNs(podNs);
    }
  };

  /** etcd chaos on a schedule over the run. */
  const chaos = async (deadline: number): Promise<void> => {
    if (!o.etcdChaos) return;
    const span = deadline - Date.now();
    const plan: Array<[number, 'kill-leader' | 'kill-random']> = [
      [0.12, 'kill-leader'],
      [0.42, 'kill-random'],
      [0.68, 'kill-leader'],
    ];
    const start = Date.now();
    for (const [at, what] of plan) {
      await sleep(Math.max(0, start + at * span - Date.now()));
      if (Date.now() >= deadline) return;
      const victim = what === 'kill-leader' ? await cluster.leader() : cluster.members[Math.floor(rnd() * cluster.members.length)]!;
      report.events.push(`${((Date.now() - t0) / 1000).toFixed(1)}s ${what}: SIGKILL ${victim.name}`);
      o.log(report.events.at(-1)!);
      await cluster.kill(victim);
      await sleep(1000 + rnd() * 2000);
      await cluster.restart(victim);
      report.events.push(`${((Date.now() - t0) / 1000).toFixed(1)}s restart ${victim.name}`);
      o.log(report.events.at(-1)!);
      lastEventAt = Date.now();
    }
  };

  const strandIpam = (args: string[]): unknown => {
    const out = execFileSync(
      strandExe,
      ['ipam', '--etcd-endpoints', cluster.tcpEndpoints.join(','), '--etcd-prefix', prefix, '--network', net, '--json', ...args],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 60_000,
      },
    );
    return JSON.parse(out) as unknown;
  };

  try {
    for (const n of nodeNs) addNs(n);
    // Warm-up: one pod per node, so each bridge exists and each node holds a block.
    const warm = await Promise.all(
      nodeNs.map(async (_, i) => {
        const a: Attachment = { cid: `chaos-${p}-${i}-warm`, node: i, podNs: `${p}-n${i}w`, state: 'deleting' };
        addNs(a.podNs);
        // A runtime retries an ADD that answered 11 (try again later).
        let r = await invoke(bridgeExe, i, cniEnv('ADD', a), conf(i), false);
        for (let k = 0; k < 5 && r.code !== 0 && codeOf(r) === '11'; k++) {
          await sleep(500);
          r = await invoke(bridgeExe, i, cniEnv('ADD', a), conf(i), false);
        }
        if (r.code !== 0) {
          const members = cluster.members.map((m) => `${m.name} ${m.clientPort} ${m.exited ? 'EXITED' : 'up'} ${m.log.join('').slice(-300)}`).join('\n');
          throw new Error(`warm-up ADD on node ${i} failed: ${r.stdout} ${r.stderr}\netcd members:\n${members}`);
        }
        const ok = await del(a, false, Date.now() + 60_000);
        if (!ok) throw new Error(`warm-up DEL on node ${i} failed`);
        delNs(a.podNs);
        return a;
      }),
    );
    report.adds.ok += warm.length;
    const baseline = nodeNs.map((n) => ({ links: linkNames(n), routes: routes(n) }));
    o.log(`chaos ${p}: ${o.nodes} nodes x ${o.slotsPerNode} pods, ${(o.durationMs / 1000).toFixed(0)} s, seed ${o.seed}, etcd ${cluster.endpoints.join(' ')}`);

    // Orphans with no kernel trace at all: IPAM ADD for containers that never get an interface.
    for (let i = 0; i < o.nodes; i += 2) {
      const cid = `chaos-${p}-${i}-ipamonly`;
      const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: cid, CNI_NETNS: `/run/netns/${nodeNs[i]}-none`, CNI_IFNAME: 'eth0' };
      let r = await invoke(ipamExe, i, env, { ...conf(i), type: 'strand-ipam' }, false);
      for (let k = 0; k < 5 && r.code !== 0 && codeOf(r) === '11'; k++) {
        await sleep(500);
        r = await invoke(ipamExe, i, env, { ...conf(i), type: 'strand-ipam' }, false);
      }
      if (r.code !== 0) throw new Error(`IPAM-only ADD failed: ${r.stdout}`);
      report.orphansIpamOnly++;
    }

    const deadline = Date.now() + o.durationMs;
    const slots: Array<Promise<void>> = [];
    for (let n = 0; n < o.nodes; n++) for (let s = 0; s < o.slotsPerNode; s++) slots.push(slot(n, s, deadline));
    await Promise.all([...slots, chaos(deadline)]);
    stopping = true;
    report.addsAfterLastEvent = lastEventAt ? addTimes.filter((t) => t > lastEventAt).length : 0;

    // etcd whole again
    for (const m of cluster.members) if (m.exited) await cluster.restart(m);
    await cluster.waitReady(60_000);
    const pending = all.filter((a) => a.state === 'pending');
    o.log(
      `churn done: ${report.adds.ok} ADDs ok, ${report.adds.killed} killed, ${report.adds.failed} failed; ${report.dels.ok} DELs ok; ${pending.length} DELs pending`,
    );
    for (const a of pending) if (!(await del(a, false, Date.now() + 60_000))) violation(`DEL ${a.cid} never succeeded after etcd recovered`);

    const live = all.filter((a) => a.state === 'up');
    report.live = live.length;

    // GC on every node, the live pods valid
    const valid = live.map((a) => ({ containerID: a.cid, ifname: 'eth0' }));
    const beforeGc = strandIpam(['ls']) as Array<{ containerId: string; ips: Array<{ ip: string }> }>;
    for (let i = 0; i < o.nodes; i++) {
      // nothing else runs now: no grace period for attachments of the last seconds of churn
      const gcConf = conf(i, { 'cni.dev/valid-attachments': valid });
      gcConf['ipam'] = { ...(gcConf['ipam'] as object), gcGracePeriod: 0 };
      const r = await invoke(bridgeExe, i, { CNI_COMMAND: 'GC' }, gcConf, false);
      if (r.code !== 0) violation(`GC on node ${i} failed: ${r.stdout} ${r.stderr.slice(0, 500)}`);
    }

    // the store: exactly the live pods, with their addresses
    const atts = strandIpam(['ls']) as Array<{ containerId: string; ips: Array<{ ip: string }> }>;
    report.gcReleased = beforeGc
      .filter((b) => !atts.some((a) => a.containerId === b.containerId))
      .map((b) => `${b.containerId}=${b.ips.map((x) => x.ip).join(',')}`);
    for (const b of beforeGc) {
      if (b.containerId.endsWith('-ipamonly') && atts.some((a) => a.containerId === b.containerId)) violation(`GC kept the orphan ${b.containerId}`);
    }
    if (beforeGc.filter((b) => b.containerId.endsWith('-ipamonly')).length !== report.orphansIpamOnly)
      violation('the IPAM-only orphans were not in the store before GC');
    const want = new Map(live.map((a) => [a.cid, a.ip]));
    const seen = new Map<string, string>();
    for (const at of atts) {
      const ips = at.ips.map((x) => x.ip);
      if (!want.has(at.containerId)) violation(`leaked in the store: ${at.containerId} holds ${ips.join(',')}`);
      else if (ips.length !== 1 || ips[0] !== want.get(at.containerId))
        violation(`store has ${ips.join(',')} for ${at.containerId}, ADD returned ${want.get(at.containerId)}`);
      for (const x of ips) {
        if (seen.has(x)) violation(`store: ${x} held by ${seen.get(x)} and ${at.containerId}`);
        seen.set(x, at.containerId);
      }
    }
    for (const a of live) if (!atts.some((x) => x.containerId === a.cid)) violation(`GC or chaos lost live pod ${a.cid} (${a.ip})`);
    const repaired = strandIpam(['gc']) as Array<{
      orphans: string[];
      restored: string[];
      blocksCreated: string[];
      attachmentsFixed: string[];
      conflicts: string[];
    }>;
    for (const r of repaired) {
      if (r.orphans.length || r.restored.length || r.blocksCreated.length || r.attachmentsFixed.length || r.conflicts.length)
        violation(`store inconsistent: gc repaired ${JSON.stringify(r)}`);
    }
    const usage = strandIpam(['usage']) as { pools: Array<{ used: number }> };
    const used = usage.pools.reduce((s, x) => s + x.used, 0);
    if (used !== live.length) violation(`block usage says ${used} addresses used, ${live.length} pods live`);

    // the kernel: live pods have their address (unique), nothing else anywhere
    const kernelIps = new Map<string, string>();
    for (const a of live) {
      const addrs = ipJson<Array<{ addr_info: Array<{ family: string; local: string }> }>>(['-n', a.podNs, 'addr', 'show', 'dev', 'eth0']).flatMap((l) =>
        l.addr_info.filter((x) => x.family === 'inet').map((x) => x.local),
      );
      if (!a.ip || !addrs.includes(a.ip)) violation(`${a.podNs} (${a.cid}) has ${addrs.join(',') || 'no address'}, expected ${a.ip}`);
      for (const x of addrs) {
        if (kernelIps.has(x)) violation(`kernel: ${x} configured in ${kernelIps.get(x)} and ${a.podNs}`);
        kernelIps.set(x, a.podNs);
      }
    }
    const liveNs = new Set(live.map((a) => a.podNs));
    for (const ns of made) {
      if (nodeNs.includes(ns) || liveNs.has(ns)) continue;
      const names = linkNames(ns);
      if (names.join(',') !== 'lo') violation(`pod namespace ${ns} still has ${names.join(',')}`);
    }
    for (let i = 0; i < o.nodes; i++) {
      const veths = linkNames(nodeNs[i]!).filter((n) => !baseline[i]!.links.includes(n));
      const expect = live.filter((a) => a.node === i).length;
      if (veths.length !== expect) violation(`node ${i}: ${veths.length} extra links (${veths.join(',')}), ${expect} live pods`);
    }

    // delete every live pod: everything must be gone
    for (const a of live) if (!(await del(a, false, Date.now() + 60_000))) violation(`final DEL ${a.cid} failed`);
    const left = strandIpam(['ls']) as unknown[];
    if (left.length) violation(`store not empty after the last DEL: ${JSON.stringify(left).slice(0, 500)}`);
    for (let i = 0; i < o.nodes; i++) {
      const links = linkNames(nodeNs[i]!);
      if (links.join(',') !== baseline[i]!.links.join(',')) violation(`node ${i} links ${links.join(',')}, before the run ${baseline[i]!.links.join(',')}`);
      const rt = routes(nodeNs[i]!);
      if (rt !== baseline[i]!.routes) violation(`node ${i} routes differ from before the run:\n${rt}\nvs\n${baseline[i]!.routes}`);
    }
    for (const a of live) if (linkNames(a.podNs).join(',') !== 'lo') violation(`${a.podNs} not empty after DEL`);
    const st = await invoke(bridgeExe, 0, { CNI_COMMAND: 'STATUS' }, conf(0), false);
    if (st.code !== 0) violation(`STATUS after the run: ${st.stdout}`);
    return report;
  } finally {
    for (const pid of children) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    for (const n of [...made].reverse()) delNs(n);
    await cluster.stop();
    report.seconds = (Date.now() - t0) / 1000;
  }
}

function linkNames(ns: string): string[] {
  return ipJson<Array<{ ifname: string }>>(['-n', ns, 'link', 'show'])
    .map((l) => l.ifname)
    .sort();
}

/** Main-table routes of a namespace, both families, as comparable text. */
function routes(ns: string): string {
  const v4 = ip(['-n', ns, '-4', 'route', 'show']).trim();
  const v6 = ip(['-n', ns, '-6', 'route', 'show']).trim();
  return `${v4}\n${v6}`
    .split('\n')
    .filter(Boolean)
    .map((l) => l.replace(/ linkdown/g, '').replace(/\s+$/, ''))
    .sort()
    .join('\n');
}
