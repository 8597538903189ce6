// A clean uninstall (issue #19 item 6): a node of a simulated two-node vxlan cluster
// (network namespaces, etcd over a unix socket; test/integration/agent/cluster.ts) gets
// strand the DaemonSet's way (`strand install` from a conflist template like the
// ConfigMap's: strand-bridge with ipMasq and hairpin, strand-ipam on etcd, strand-portmap,
// the agent's pod MTU file, a log file), runs the agent from the installed binary and
// two pods through libcni (one with a hostPort). `strand install --uninstall
// --node-state` refuses while the pods and the agent are there; after they are gone it
// leaves the node exactly as before the install: the same links, addresses, routes,
// iptables and nftables rules (`ip -j`, iptables-save, nft), no file of strand's, and in
// etcd nothing of the node (its block released, the other node's route to it gone).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildCnitool, CniEnv, ok } from '../../helpers/cnitool.ts';
import { waitDadSettled } from '../../helpers/kstate.ts';
import { ipJson, NetnsSet } from '../../helpers/netns.ts';
import { repoRoot } from '../../helpers/run-plugin.ts';
import { requireTools, SimCluster } from '../agent/cluster.ts';

const STRAND_SEA = join(repoRoot, 'dist', 'strand');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let cluster: SimCluster | undefined;
let cni: CniEnv | undefined;
let agent: ChildProcess | undefined;

beforeAll(() => {
  requireTools();
  buildCnitool();
});
afterEach(async () => {
  if (agent && agent.exitCode === null && agent.signalCode === null) {
    agent.kill('SIGKILL');
    await new Promise((r) => agent?.once('exit', r));
  }
  agent = undefined;
  cni?.cleanup();
  cni = undefined;
  await cluster?.destroy();
  cluster = undefined;
});

/** iptables-save of one family without counters, comments and tables that hold nothing (empty built-in chains, ACCEPT). */
function iptablesRules(ns: string, tool: 'iptables-save' | 'ip6tables-save'): string[] {
  const out = execFileSync('ip', ['netns', 'exec', ns, tool], { encoding: 'utf8' });
  const rules: string[] = [];
  let table = '';
  for (const line of out.split('\n')) {
    if (line.startsWith('*')) table = line;
    else if (line.startsWith('-A')) rules.push(`${table} ${line}`);
    else if (line.startsWith(':')) {
      const [chain, policy] = line.slice(1).split(' ');
      // a user chain (policy "-"), or a built-in chain with another policy than ACCEPT
      if (policy !== 'ACCEPT') rules.push(`${table} :${chain} ${policy}`);
    }
  }
  return rules.sort();
}

/** nft's ruleset as rules and non-base chains; tables that hold only empty base chains (iptables-nft's own) are nothing. */
function nftRules(ns: string): string[] {
  const j = JSON.parse(execFileSync('ip', ['netns', 'exec', ns, 'nft', '-j', 'list', 'ruleset'], { encoding: 'utf8' })) as {
    nftables: Array<{
      chain?: { family: string; table: string; name: string; hook?: string };
      rule?: { family: string; table: string; chain: string; expr: unknown };
    }>;
  };
  const out: string[] = [];
  for (const e of j.nftables) {
    if (e.chain && e.chain.hook === undefined) out.push(`chain ${e.chain.family} ${e.chain.table} ${e.chain.name}`);
    if (e.rule) out.push(`rule ${e.rule.family} ${e.rule.table} ${e.rule.chain} ${JSON.stringify(e.rule.expr)}`);
  }
  return out.sort();
}

/** Everything of the node's network state a plugin or the agent can leave behind. */
function nodeNet(ns: string): Record<string, unknown> {
  const links = ipJson<Array<{ ifname: string; master?: string; mtu: number; address?: string; flags: string[]; linkinfo?: { info_kind?: string } }>>(
    ['-d', 'link', 'show'],
    { ns },
  ).map((l) => ({ ifname: l.ifname, kind: l.linkinfo?.info_kind, master: l.master, mtu: l.mtu, address: l.address, flags: l.flags }));
  const addrs = ipJson<Array<{ ifname: string; addr_info: Array<{ local: string; prefixlen: number }> }>>(['addr', 'show'], { ns }).map((a) => ({
    ifname: a.ifname,
    addrs: a.addr_info.map((x) => `${x.local}/${x.prefixlen}`).sort(),
  }));
  const routes = [4, 6].flatMap((v) =>
    ipJson<Array<Record<string, unknown>>>([`-${v}`, 'route', 'show', 'table', 'all'], { ns }).map((r) =>
      ['type', 'dst', 'gateway', 'dev', 'protocol', 'table', 'scope', 'prefsrc'].map((k) => `${k}=${String(r[k] ?? '')}`).join(' '),
    ),
  );
  return {
    links,
    addrs,
    routes: routes.sort(),
    iptables: iptablesRules(ns, 'iptables-save'),
    ip6tables: iptablesRules(ns, 'ip6tables-save'),
    nft: nftRules(ns),
  };
}

function files(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      const dir = statSync(p).isDirectory();
      out.push(`${relative(root, p)}${dir ? '/' : ''}`);
      if (dir) walk(p);
    }
  };
  walk(root);
  return out.sort();
}

describe('strand install --uninstall --node-state', () => {
  it('after install, agent, pods and pod deletion, the node is as before: no link, route, rule or file of strand left; etcd forgets the node', async () => {
    const c = new SimCluster({ mode: 'vxlan', nodes: 2, leaseTTL: '3s', resync: '1s' });
    cluster = c;
    await c.setup();
    const [n1, n2] = c.nodes as [(typeof c.nodes)[0], (typeof c.nodes)[0]];
    // the node's own directories: /opt/cni/bin, /etc/cni/net.d, /run/strand, /var/log/strand, /var/lib/cni/networks
    const root = join(c.dir, 'n1-root');
    const d = {
      bin: join(root, 'opt-cni-bin'),
      conf: join(root, 'etc-cni-net.d'),
      run: join(root, 'run-strand'),
      log: join(root, 'var-log-strand'),
      ipam: join(root, 'var-lib-cni-networks'),
    };
    // the runtime's directories exist before strand; /run/strand and /var/log/strand are
    // made by the DaemonSet (hostPath DirectoryOrCreate), so after the first snapshot
    for (const x of [d.bin, d.conf, d.ipam]) mkdirSync(x, { recursive: true });
    const template = join(c.dir, 'conflist.template');
    writeFileSync(
      template,
      JSON.stringify({
        cniVersion: '1.0.0',
        cniVersions: ['1.0.0', '1.1.0'],
        name: c.opts.network, // the other node's network: one pool, routed between them
        plugins: [
          {
            type: 'strand-bridge',
            bridge: 'strand0',
            mtuFile: join(d.run, 'pod-mtu'),
            isGateway: true,
            isDefaultGateway: true,
            ipMasq: true,
            hairpinMode: true,
            logFile: join(d.log, 'cni.log'),
            ipam: {
              type: 'strand-ipam',
              nodeName: '${NODE_NAME}',
              dataDir: d.ipam,
              ranges: [[{ subnet: '10.244.0.0/16' }]],
              etcd: { endpoints: [c.etcd.unixEndpoint], prefix: c.etcdPrefix },
            },
          },
          { type: 'strand-portmap', capabilities: { portMappings: true }, logFile: join(d.log, 'cni.log') },
        ],
      }),
    );
    // the underlay settled (carrier, IPv6 link-local address) before the first snapshot
    for (let i = 0; ipJson<Array<{ flags: string[] }>>(['link', 'show', 'eth1'], { ns: n1.ns })[0]?.flags.includes('NO-CARRIER'); i++) {
      if (i > 100) throw new Error('eth1 of n1 has no carrier');
      await sleep(50);
    }
    await waitDadSettled([n1.ns]);
    const before = { net: nodeNet(n1.ns), files: files(root) };
    expect(before.files).toEqual(['etc-cni-net.d/', 'opt-cni-bin/', 'var-lib-cni-networks/']);
    for (const x of [d.run, d.log]) mkdirSync(x);

    const inNode = (args: string[]): { code: number | null; out: string } => {
      const r = spawnSync('ip', ['netns', 'exec', n1.ns, ...args], { encoding: 'utf8' });
      return { code: r.status, out: `${r.stdout}${r.stderr}` };
    };
    const installed = inNode([
      STRAND_SEA,
      'install',
      '--source',
      STRAND_SEA,
      '--bin-dir',
      d.bin,
      '--conf-dir',
      d.conf,
      '--template',
      template,
      '--node-name',
      'n1',
    ]);
    expect(installed.code, installed.out).toBe(0);
    const strand = join(d.bin, 'strand');
    const conflist = join(d.conf, '10-strand.conflist');

    // the agent of n1 from the installed binary, with the installed conflist; n2's as usual
    const agentLog: string[] = [];
    agent = spawn(
      'ip',
      [
        'netns',
        'exec',
        n1.ns,
        strand,
        'agent',
        `--cni-conf=${conflist}`,
        '--node-name=n1',
        `--node-ip=${n1.ip}`,
        '--mode=vxlan',
        '--lease-ttl=3s',
        '--resync=1s',
        `--state-file=${join(d.run, 'agent.json')}`,
        `--pod-mtu-file=${join(d.run, 'pod-mtu')}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    agent.stderr?.setEncoding('utf8').on('data', (x: string) => agentLog.push(x));
    c.startAgent(n2);
    await c.waitSynced(n2);
    for (let i = 0; !agentLog.join('').includes('synced at revision'); i++) {
      if (i > 400) throw new Error(`n1's agent did not sync:\n${agentLog.join('')}`);
      await sleep(50);
    }
    const q = await c.addPod(n2);

    // two pods on n1 through libcni, one with a hostPort
    cni = new CniEnv();
    writeFileSync(join(cni.confDir, '10-strand.conflist'), execFileSync('cat', [conflist]));
    const pods = ['a', 'b'].map((x) => `${c.prefix}-u${x}`);
    for (const p of pods) execFileSync('ip', ['netns', 'add', p]);
    try {
      const path = [d.bin];
      ok(await cni.run('add', c.opts.network, `/run/netns/${pods[0]}`, { hostNs: n1.ns, containerId: 'ua', path }));
      const b = ok(
        await cni.run('add', c.opts.network, `/run/netns/${pods[1]}`, {
          hostNs: n1.ns,
          containerId: 'ub',
          path,
          capArgs: { portMappings: [{ hostPort: 39080, containerPort: 80, protocol: 'tcp' }] },
        }),
      );
      expect(b.ips[0].address).toMatch(/^10\.244\./);
      // what strand made on the node
      const during = nodeNet(n1.ns) as { links: Array<{ ifname: string; kind?: string }>; routes: string[]; iptables: string[] };
      expect(during.links.map((l) => `${l.ifname}:${l.kind ?? ''}`)).toEqual(expect.arrayContaining(['strand0:bridge', 'strand.4096:vxlan']));
      for (let i = 0; !(nodeNet(n1.ns) as { routes: string[] }).routes.some((r) => r.includes('protocol=115')); i++) {
        if (i > 200) throw new Error(`no route of the agent on n1:\n${agentLog.join('')}`);
        await sleep(50);
      }
      expect(during.iptables.some((r) => r.includes('CNI-HOSTPORT-DNAT'))).toBe(true);
      expect(during.iptables.some((r) => r.includes('MASQUERADE'))).toBe(true);
      expect(files(root)).toEqual(expect.arrayContaining(['run-strand/pod-mtu', 'run-strand/agent.json', 'var-log-strand/cni.log', 'opt-cni-bin/loopback']));

      // pods and the agent still there: refused, nothing removed
      const uninstall = [
        strand,
        'install',
        '--uninstall',
        '--node-state',
        '--bin-dir',
        d.bin,
        '--conf-dir',
        d.conf,
        '--agent-state-file',
        join(d.run, 'agent.json'),
        '--pod-mtu-file',
        join(d.run, 'pod-mtu'),
        '--log-dir',
        d.log,
      ];
      const refused = inNode(uninstall);
      expect(refused.code, refused.out).toBe(1);
      expect(refused.out).toMatch(/still in use: bridge strand0 has pod ports: veth/);
      expect(refused.out).toMatch(new RegExp(`still in use: pod attachment ${c.opts.network} ua/eth0`));
      expect(refused.out).toMatch(/still in use: strand agent runs on this node/);
      expect(refused.out).toMatch(/refused: nothing removed/);
      expect(existsSync(conflist)).toBe(true);

      // the DaemonSet goes (the agent stops), the pods are deleted, then the uninstall
      agent.kill('SIGTERM');
      await new Promise((r) => agent?.once('exit', r));
      // the runtime passes the pod's port mappings on DEL too (containerd does)
      ok(await cni.run('del', c.opts.network, `/run/netns/${pods[0]}`, { hostNs: n1.ns, containerId: 'ua', path }));
      ok(
        await cni.run('del', c.opts.network, `/run/netns/${pods[1]}`, {
          hostNs: n1.ns,
          containerId: 'ub',
          path,
          capArgs: { portMappings: [{ hostPort: 39080, containerPort: 80, protocol: 'tcp' }] },
        }),
      );
      const done = inNode(uninstall);
      expect(done.code, done.out).toBe(0);
      console.log(done.out);
    } finally {
      for (const p of pods) spawnSync('ip', ['netns', 'del', p]);
    }

    expect(nodeNet(n1.ns)).toEqual(before.net);
    expect(files(root)).toEqual(before.files);
    // etcd: nothing of n1 once its liveness key's lease runs out; n2 drops its route and FDB entry to n1
    for (let i = 0; ; i++) {
      const keys = c.etcd
        .etcdctl(['get', '--prefix', `${c.etcdPrefix}/`, '--keys-only'])
        .split('\n')
        .filter(Boolean);
      const values = c.etcd.etcdctl(['get', '--prefix', `${c.etcdPrefix}/`, '--print-value-only']);
      if (!keys.some((k) => k.endsWith('/n1')) && !values.includes('"node":"n1"')) break;
      if (i > 200) throw new Error(`etcd still knows n1: ${keys.join(' ')}`);
      await sleep(50);
    }
    await c.waitRoutes(n2, (r) => ![...r.values()].some((x) => x.gateway === n1.ip), 15_000);
    expect(q.ip).toMatch(/^10\.244\./);
  });
});

describe('strand install --uninstall --node-state --force', () => {
  it('with a pod still attached: refused without --force; --force removes its network, releases its address and leaves the node as before', async () => {
    const nets = new NetnsSet();
    const root = mkdtempSync(join(tmpdir(), `${nets.prefix}-unf-`));
    try {
      const host = nets.add('h');
      const pod = nets.add('p');
      const d = { bin: join(root, 'bin'), conf: join(root, 'net.d'), ipam: join(root, 'ipam'), run: join(root, 'run'), log: join(root, 'log') };
      for (const x of [d.bin, d.conf, d.ipam]) mkdirSync(x);
      const template = join(root, 'template');
      writeFileSync(
        template,
        JSON.stringify({
          cniVersion: '1.0.0',
          name: 'lfforce',
          plugins: [
            {
              type: 'strand-bridge',
              bridge: `${nets.prefix}-br`,
              isGateway: true,
              ipMasq: true,
              ipam: { type: 'strand-ipam', dataDir: d.ipam, ranges: [[{ subnet: '10.97.0.0/24' }]] },
            },
            { type: 'strand-portmap', capabilities: { portMappings: true } },
          ],
        }),
      );
      await waitDadSettled([host]);
      const before = { net: nodeNet(host), files: files(root) };
      const inHost = (args: string[]): { code: number | null; out: string } => {
        const r = spawnSync('ip', ['netns', 'exec', host, ...args], { encoding: 'utf8' });
        return { code: r.status, out: `${r.stdout}${r.stderr}` };
      };
      const inst = inHost([STRAND_SEA, 'install', '--source', STRAND_SEA, '--bin-dir', d.bin, '--conf-dir', d.conf, '--template', template]);
      expect(inst.code, inst.out).toBe(0);
      cni = new CniEnv();
      writeFileSync(join(cni.confDir, 'lfforce.conflist'), execFileSync('cat', [join(d.conf, '10-strand.conflist')]));
      ok(
        await cni.run('add', 'lfforce', nets.path(pod), {
          hostNs: host,
          containerId: 'f1',
          path: [d.bin],
          capArgs: { portMappings: [{ hostPort: 39081, containerPort: 80, protocol: 'tcp' }] },
        }),
      );
      const uninstall = [
        join(d.bin, 'strand'),
        'install',
        '--uninstall',
        '--node-state',
        '--bin-dir',
        d.bin,
        '--conf-dir',
        d.conf,
        '--agent-state-file',
        join(d.run, 'agent.json'),
        '--pod-mtu-file',
        join(d.run, 'pod-mtu'),
        '--log-dir',
        d.log,
      ];
      const refused = inHost(uninstall);
      expect(refused.code).toBe(1);
      expect(refused.out).toMatch(/still in use: pod attachment lfforce f1\/eth0 \(10\.97\.0\.2\)/);
      const forced = inHost([...uninstall, '--force']);
      expect(forced.code, forced.out).toBe(0);
      expect(forced.out).toMatch(/released attachment lfforce f1\/eth0: 10\.97\.0\.2/);
      expect(nodeNet(host)).toEqual(before.net);
      expect(files(root)).toEqual(before.files);
      expect(ipJson<Array<{ ifname: string }>>(['link', 'show'], { ns: pod }).map((l) => l.ifname)).toEqual(['lo']);
    } finally {
      nets.cleanup();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
