// DEL never strands a pod (issue #19 item 4), with the built binaries: when the IPAM
// store cannot be used (etcd stopped, its TLS files gone, the local store's directory
// unreadable), strand-bridge's DEL still removes the pod's link, addresses and
// masquerade rules and exits 0 within 3 s, recording the release in the node's journal;
// the address stays allocated (no other node can take it) until the release is
// completed: by the next strand-ipam call on the node, or by the node agent; `strand
// ipam ls` shows it pending; GC and the journal agree; ADD with the store unreachable is
// still code 11.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freePort, startEtcd, type EtcdCluster } from '../../helpers/etcd.ts';
import { ip, ipJson, NetnsSet, nsExec } from '../../helpers/netns.ts';
import { binDir, pathEnv, refBinDir, via } from '../../helpers/run-plugin.ts';
import { runIn, SimEtcd } from '../agent/cluster.ts';
import { PENDING_DIR } from '../../../ipam/pending.ts';
import { parseEtcdConfig } from '../../../ipam/store/etcd-config.ts';
import { openEtcdHttpStore } from '../../../ipam/store/etcd.ts';
import { LocalStore } from '../../../ipam/store/local.ts';
import type { Store } from '../../../ipam/store/types.ts';
import { addrOf, cli, gcConf, netConf, plugin, requireBuilt } from './helpers.ts';

const BRIDGE = join(binDir, 'strand-bridge');
const STRAND = join(binDir, 'strand');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function pendingFiles(dataDir: string): string[] {
  const d = join(dataDir, PENDING_DIR);
  return existsSync(d) ? readdirSync(d).filter((n) => n.endsWith('.json')) : [];
}

async function waitFor(what: string, pred: () => boolean | Promise<boolean>, timeoutMs: number, explain: () => string = () => ''): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await pred()) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not after ${timeoutMs} ms\n${explain()}`);
    await sleep(100);
  }
}

interface CniAnswer {
  code?: number;
  ips?: Array<{ address: string }>;
}

/** The first address of an ADD answer, with its prefix length. */
function firstAddress(j: CniAnswer | undefined): string {
  const a = j?.ips?.[0]?.address;
  if (!a) throw new Error(`no address in ${JSON.stringify(j)}`);
  return a;
}

interface Pod {
  ns: string;
  id: string;
}

describe('DEL never strands a pod', () => {
  let etcd: SimEtcd;
  let nets: NetnsSet;
  let dir: string;
  let host: string;
  let stopped = false;
  let agent: ChildProcess | undefined;
  beforeAll(async () => {
    requireBuilt();
    etcd = await SimEtcd.create();
  });
  afterAll(async () => {
    await etcd?.destroy();
  });
  beforeEach(() => {
    nets = new NetnsSet();
    dir = mkdtempSync(join(tmpdir(), `${nets.prefix}-pending-`));
    host = nets.add('h');
  });
  afterEach(async () => {
    if (stopped) etcd.proc?.kill('SIGCONT');
    stopped = false;
    if (agent && agent.exitCode === null && agent.signalCode === null) {
      agent.kill('SIGKILL');
      await new Promise((r) => agent?.once('exit', r));
    }
    agent = undefined;
    nets.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const stopEtcd = (): void => {
    etcd.proc?.kill('SIGSTOP');
    stopped = true;
  };
  const contEtcd = (): void => {
    etcd.proc?.kill('SIGCONT');
    stopped = false;
  };

  /** `strand <args>` in the host namespace, in the background slot (killed after the test); its stderr once it logged `ready`. */
  async function startInHost(args: string[], ready: string): Promise<string[]> {
    const log: string[] = [];
    agent = spawn('ip', ['netns', 'exec', host, STRAND, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    agent.stderr?.setEncoding('utf8').on('data', (d: string) => log.push(d));
    await waitFor(
      `strand ${args[0]} ready`,
      () => log.join('').includes(ready),
      20_000,
      () => log.join(''),
    );
    return log;
  }

  /** `who` (its stderr in `log`) completes the pending release of `pod`: journal empty, the attachment gone from etcd. */
  async function expectCompletedBy(who: string, log: string[], pod: Pod): Promise<void> {
    await waitFor(
      `${who} completed the release`,
      () => pendingFiles(join(dir, 'nA')).length === 0,
      20_000,
      () => log.join('').slice(-3000),
    );
    expect(log.join('')).toContain(`pending release of lfnet ${pod.id}/eth0`);
    expect(await withEtcdStore(async (s) => await s.listAttachments('lfnet'))).toEqual([]);
  }

  function bridgeConf(node: string, ipam: Record<string, unknown>): Record<string, unknown> {
    return {
      cniVersion: '1.1.0',
      name: 'lfnet',
      type: 'strand-bridge',
      bridge: `${nets.prefix}-br`,
      isGateway: true,
      ipMasq: true,
      ipam: { type: 'strand-ipam', nodeName: node, dataDir: join(dir, node), ranges: [[{ subnet: '10.88.0.0/16' }]], ...ipam },
    };
  }

  function etcdIpam(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return { etcd: { endpoints: [etcd.unixEndpoint], prefix: `/${nets.prefix}`, dialTimeout: 2000, requestTimeout: 5000, ...extra } };
  }

  async function bridge(
    command: string,
    pod: Pod,
    conf: Record<string, unknown>,
    wrap: string[] = [],
  ): Promise<{ code: number | null; stdout: string; stderr: string; ms: number; json: CniAnswer | undefined }> {
    const t0 = Date.now();
    const exe = wrap.length ? (wrap[0] as string) : BRIDGE;
    const r = await runIn(
      host,
      exe,
      { ...pathEnv(), CNI_COMMAND: command, CNI_CONTAINERID: pod.id, CNI_NETNS: nets.path(pod.ns), CNI_IFNAME: 'eth0', CNI_PATH: `${binDir}:${refBinDir}` },
      JSON.stringify(conf),
      wrap.length ? [...wrap.slice(1), BRIDGE] : [],
    );
    let json: CniAnswer | undefined;
    try {
      json = JSON.parse(r.stdout) as CniAnswer;
    } catch {
      json = undefined;
    }
    return { ...r, ms: Date.now() - t0, json };
  }

  function newPod(n: number): Pod {
    return { ns: nets.add(`p${n}`), id: `${nets.prefix}-c${n}` };
  }

  function natRulesOf(id: string): string[] {
    return nsExec(host, 'iptables-save', ['-t', 'nat'])
      .split('\n')
      .filter((l) => l.includes(id));
  }

  function podHasEth0(pod: Pod): boolean {
    return ipJson<Array<{ ifname: string }>>(['link', 'show'], { ns: pod.ns }).some((l) => l.ifname === 'eth0');
  }

  function bridgePorts(): string[] {
    return ipJson<Array<{ ifname: string; master?: string }>>(['link', 'show'], { ns: host })
      .filter((l) => l.master === `${nets.prefix}-br`)
      .map((l) => l.ifname);
  }

  async function withEtcdStore<T>(fn: (s: Store) => Promise<T>): Promise<T> {
    const s = openEtcdHttpStore(parseEtcdConfig({ endpoints: [etcd.tcpEndpoint], prefix: `/${nets.prefix}` }));
    try {
      return await fn(s);
    } finally {
      await s.close();
    }
  }

  async function expectStrandedNot(pod: Pod, conf: Record<string, unknown>, wrap: string[] = []): Promise<void> {
    const del = await bridge('DEL', pod, conf, wrap);
    expect(del.code, del.stdout + del.stderr).toBe(0);
    expect(del.ms, 'DEL wall time').toBeLessThan(3000);
    expect(del.stderr).toMatch(/IPAM store unavailable .* recorded in .*\.strand-ipam-pending\/[0-9a-f]{32}\.json/);
    expect(podHasEth0(pod)).toBe(false);
    expect(bridgePorts()).toEqual([]);
    expect(natRulesOf(pod.id)).toEqual([]);
    // DEL again (the runtime retries): still 0, still one entry
    const again = await bridge('DEL', pod, conf, wrap);
    expect(again.code, again.stdout).toBe(0);
  }

  for (const transport of ['http', 'grpc'] as const) {
    it(`etcd stopped (${transport}): DEL exits 0 within 3 s and removes link and rules; the address stays held while pending; ls shows it; the next call on the node completes it`, async () => {
      const conf = bridgeConf('nA', etcdIpam({ transport }));
      const p1 = newPod(1);
      const add = await bridge('ADD', p1, conf);
      expect(add.code, add.stdout + add.stderr).toBe(0);
      const addr = firstAddress(add.json).split('/')[0] as string;
      expect(natRulesOf(p1.id).length).toBeGreaterThan(0);

      stopEtcd();
      await expectStrandedNot(p1, conf);
      expect(pendingFiles(join(dir, 'nA'))).toHaveLength(1);
      // ADD with the store unreachable (refusing, here: nothing at the endpoint) is still 11, fast
      const refusing = bridgeConf('nA', { etcd: { endpoints: [`unix:${join(dir, 'no-etcd')}`], prefix: `/${nets.prefix}`, transport } });
      const p9 = newPod(9);
      const failed = await bridge('ADD', p9, refusing);
      expect(failed.json?.code, failed.stdout).toBe(11);
      expect(failed.ms).toBeLessThan(1500);
      contEtcd();

      const storeFlags = ['--etcd-endpoints', etcd.tcpEndpoint, '--etcd-prefix', `/${nets.prefix}`, '--data-dir', join(dir, 'nA')];
      const ls = JSON.parse((await cli([...storeFlags, '--json', 'ls'])).out) as Array<{ containerId: string; pendingRelease?: { since: string } }>;
      expect(ls.find((a) => a.containerId === p1.id)?.pendingRelease?.since).toMatch(/^\d{4}-/);
      const table = await cli([...storeFlags, 'ls']);
      expect(table.out).toMatch(new RegExp(`${p1.id}\\s+eth0\\s+nA\\s+${addr.replace(/\./g, '\\.')}.*release pending since`));
      const pend = await cli([...storeFlags, 'pending']);
      expect(pend.out).toMatch(new RegExp(`lfnet\\s+${p1.id}\\s+eth0\\s+nA`));

      // no other node gets the address while the release is pending
      const other = await plugin(
        { command: 'ADD', containerId: 'other', node: 'nB' },
        {
          ...netConf('lfnet', { nodeName: 'nB', dataDir: join(dir, 'nB'), ranges: [[{ subnet: '10.88.0.0/16' }]], ...etcdIpam() }),
          runtimeConfig: { ips: [addr] },
        },
      );
      expect(other.json?.code, other.stdout).toBe(103);
      expect(await withEtcdStore(async (s) => (await s.getAttachment('lfnet', p1.id, 'eth0'))?.value.ips.map((e) => e.ip))).toEqual([addr]);

      // the next call on node nA (an ADD of another pod) completes it first
      const p2 = newPod(2);
      const add2 = await bridge('ADD', p2, { ...conf, logLevel: 'info' });
      expect(add2.code, add2.stdout + add2.stderr).toBe(0);
      expect(add2.stderr).toContain(`pending release of lfnet ${p1.id}/eth0`);
      expect(pendingFiles(join(dir, 'nA'))).toEqual([]);
      expect(await withEtcdStore(async (s) => (await s.listAttachments('lfnet')).map((a) => a.value.containerId))).toEqual([p2.id]);
      expect((await bridge('DEL', p2, conf)).code).toBe(0);
    });
  }

  it("a node gone with a release pending: `strand ipam node release --force` releases the attachment; the node's journal, if it comes back, finds nothing held", async () => {
    const conf = bridgeConf('nA', etcdIpam({ requestTimeout: 1500 }));
    const p1 = newPod(1);
    const add = await bridge('ADD', p1, conf);
    expect(add.code, add.stdout + add.stderr).toBe(0);
    const addr = firstAddress(add.json).split('/')[0] as string;
    stopEtcd();
    await expectStrandedNot(p1, conf);
    contEtcd();
    const storeFlags = ['--etcd-endpoints', etcd.tcpEndpoint, '--etcd-prefix', `/${nets.prefix}`];
    const rel = JSON.parse((await cli([...storeFlags, '--json', 'node', 'release', 'nA', '--force'])).out) as { attachmentsReleased: string[] };
    expect(rel.attachmentsReleased).toEqual([`lfnet ${p1.id}/eth0: ${addr}`]);
    expect(await withEtcdStore(async (s) => await s.listAttachments('lfnet'))).toEqual([]);
    // the node back: its journal's entry is completed as "nothing held any more", nothing is released twice
    const done = await cli([...storeFlags, '--data-dir', join(dir, 'nA'), 'pending', '--complete']);
    expect(done.code, done.out + done.err).toBe(0);
    expect(done.out + done.err).toContain('nothing held any more');
    expect(pendingFiles(join(dir, 'nA'))).toEqual([]);
  });

  it('an ADD of an attachment whose release is pending completes that release first: no completer releases the new allocation later', async () => {
    const conf = bridgeConf('nA', etcdIpam({ requestTimeout: 1500 }));
    const p1 = newPod(1);
    expect((await bridge('ADD', p1, conf)).code).toBe(0);
    stopEtcd();
    await expectStrandedNot(p1, conf);
    contEtcd();
    const again = await bridge('ADD', p1, conf);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(pendingFiles(join(dir, 'nA'))).toEqual([]);
    const storeFlags = ['--etcd-endpoints', etcd.tcpEndpoint, '--etcd-prefix', `/${nets.prefix}`, '--data-dir', join(dir, 'nA')];
    const done = await cli([...storeFlags, 'pending', '--complete']);
    expect(done.code, done.err).toBe(0);
    expect(done.out).toBe('');
    expect(await withEtcdStore(async (s) => (await s.getAttachment('lfnet', p1.id, 'eth0'))?.value.ips.map((e) => `${e.ip}/16`))).toEqual([
      firstAddress(again.json),
    ]);
    expect((await bridge('DEL', p1, conf)).code).toBe(0);
  });

  it('GC and the journal agree: GC completes the pending releases first, releases nothing twice and recreates nothing', async () => {
    const ipam = { nodeName: 'nA', dataDir: join(dir, 'nA'), ranges: [[{ subnet: '10.89.0.0/24' }]], ...etcdIpam({ requestTimeout: 1500 }) };
    const conf = netConf('lfgc', ipam);
    const ips: Record<string, string> = {};
    for (const id of ['g1', 'g2', 'g3']) ips[id] = addrOf(await plugin({ command: 'ADD', containerId: id, node: 'nA' }, conf));
    stopEtcd();
    const del = await plugin({ command: 'DEL', containerId: 'g1', node: 'nA' }, conf);
    expect(del.code, del.stdout).toBe(0);
    contEtcd();
    const gc = await plugin({ command: 'GC', containerId: 'x', node: 'nA' }, { ...gcConf(conf, [{ containerID: 'g3', ifname: 'eth0' }]), logLevel: 'info' });
    expect(gc.code, gc.stdout + gc.stderr).toBe(0);
    expect(gc.stderr).toMatch(/pending release of lfgc g1\/eth0 .* completed: released /);
    expect(gc.stderr).toMatch(/gc released 10\.89\.0\.3/);
    expect(pendingFiles(join(dir, 'nA'))).toEqual([]);
    expect(await withEtcdStore(async (s) => (await s.listAttachments('lfgc')).map((a) => a.value.containerId))).toEqual(['g3']);
    // a second GC and a completion find nothing to do
    expect((await plugin({ command: 'GC', containerId: 'x', node: 'nA' }, gcConf(conf, [{ containerID: 'g3', ifname: 'eth0' }]))).code).toBe(0);
    expect(await withEtcdStore(async (s) => (await s.listAttachments('lfgc')).map((a) => a.value.containerId))).toEqual(['g3']);
  });

  it('the node agent completes pending releases once etcd answers again, with no plugin call', async () => {
    const conf = bridgeConf('nA', etcdIpam({ requestTimeout: 1500 }));
    const p1 = newPod(1);
    expect((await bridge('ADD', p1, conf)).code).toBe(0);
    ip(['link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1'], { ns: host });
    ip(['addr', 'add', '192.168.250.1/24', 'dev', 'up0'], { ns: host });
    ip(['link', 'set', 'up0', 'up'], { ns: host });
    ip(['link', 'set', 'up1', 'up'], { ns: host });
    const metrics = await freePort();
    const log = await startInHost(
      [
        'agent',
        '--node-name=nA',
        '--node-ip=192.168.250.1',
        `--etcd-endpoints=${etcd.unixEndpoint}`,
        `--etcd-prefix=/${nets.prefix}`,
        '--resync=1s',
        `--state-file=${join(dir, 'agent.json')}`,
        `--pod-mtu-file=${join(dir, 'pod-mtu')}`,
        `--metrics-address=127.0.0.1:${metrics}`,
        `--ipam-data-dir=${join(dir, 'nA')}`,
      ],
      'synced at revision',
    );
    stopEtcd();
    await expectStrandedNot(p1, conf);
    expect(pendingFiles(join(dir, 'nA'))).toHaveLength(1);
    contEtcd();
    await expectCompletedBy('the agent', log, p1);
  });

  it('strand daemon completes pending releases once etcd answers again, with no plugin call (--ipam-data-dir, --pending-interval)', async () => {
    const conf = bridgeConf('nA', etcdIpam({ requestTimeout: 1500 }));
    const p1 = newPod(1);
    expect((await bridge('ADD', p1, conf)).code).toBe(0);
    stopEtcd();
    await expectStrandedNot(p1, conf);
    expect(pendingFiles(join(dir, 'nA'))).toHaveLength(1);
    const log = await startInHost(
      ['daemon', `--socket=${join(dir, 'run', 'cni.sock')}`, `--ipam-data-dir=${join(dir, 'nA')}`, '--pending-interval=1', '--metrics-address=off'],
      'serving ',
    );
    // etcd still stopped: passes fail and keep the entry
    await sleep(2500);
    expect(pendingFiles(join(dir, 'nA'))).toHaveLength(1);
    contEtcd();
    await expectCompletedBy('the daemon', log, p1);
  });

  // Not on the daemon path: the capability is dropped for the plugin process, and through
  // the shim the daemon (with its own credentials) does the work.
  it.skipIf(via === 'daemon')(
    'local store directory unreadable: DEL (without CAP_DAC_OVERRIDE, as root is otherwise never refused) exits 0 and records the release beside it; a later call completes it',
    async () => {
      const dataDir = join(dir, 'nA');
      const conf = bridgeConf('nA', {});
      const p1 = newPod(1);
      const add = await bridge('ADD', p1, conf);
      expect(add.code, add.stdout + add.stderr).toBe(0);
      const netDir = join(dataDir, 'lfnet');
      chmodSync(netDir, 0o000);
      const noDac = ['/usr/bin/setpriv', '--bounding-set', '-dac_override,-dac_read_search', '--'];
      try {
        await expectStrandedNot(p1, conf, noDac);
      } finally {
        chmodSync(netDir, 0o755);
      }
      expect(pendingFiles(dataDir)).toHaveLength(1);
      expect((await new LocalStore(dataDir).listAttachments('lfnet')).map((a) => a.value.containerId)).toEqual([p1.id]);
      const ls = await cli(['--data-dir', dataDir, 'ls']);
      expect(ls.out).toMatch(new RegExp(`${p1.id}.*release pending since`));
      const p2 = newPod(2);
      expect((await bridge('ADD', p2, conf)).code).toBe(0);
      expect(pendingFiles(dataDir)).toEqual([]);
      expect((await new LocalStore(dataDir).listAttachments('lfnet')).map((a) => a.value.containerId)).toEqual([p2.id]);
      expect((await bridge('DEL', p2, conf)).code).toBe(0);
    },
  );
});

describe('DEL with the etcd TLS files gone', () => {
  let etcd: EtcdCluster;
  let dir: string;
  beforeAll(async () => {
    requireBuilt();
    etcd = await startEtcd({ tls: true });
    dir = mkdtempSync(join(tmpdir(), 'lf-pending-tls-'));
  });
  afterAll(async () => {
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('records the release (no config error stranding the pod) and completes it once the files are back; ADD without them stays a config error (7)', async () => {
    const tls = etcd.tls!;
    const certDir = join(dir, 'certs');
    mkdirSync(certDir);
    for (const [from, to] of [
      [tls.ca, 'ca.crt'],
      [tls.clientCert, 'tls.crt'],
      [tls.clientKey, 'tls.key'],
    ] as const)
      writeFileSync(join(certDir, to), execFileSync('cat', [from]));
    const conf = netConf('lftls', {
      nodeName: 'nA',
      dataDir: join(dir, 'nA'),
      ranges: [[{ subnet: '10.90.0.0/24' }]],
      etcd: {
        endpoints: etcd.endpoints,
        prefix: '/lftls',
        tls: { ca: join(certDir, 'ca.crt'), cert: join(certDir, 'tls.crt'), key: join(certDir, 'tls.key') },
      },
    });
    const a = addrOf(await plugin({ command: 'ADD', containerId: 't1', node: 'nA' }, conf));
    renameSync(certDir, `${certDir}.gone`);
    const del = await plugin({ command: 'DEL', containerId: 't1', node: 'nA' }, conf);
    expect(del.code, del.stdout + del.stderr).toBe(0);
    expect(del.stderr).toMatch(/ipam\.etcd\.tls\.\w+: cannot read .* recorded in/);
    expect(pendingFiles(join(dir, 'nA'))).toHaveLength(1);
    const add = await plugin({ command: 'ADD', containerId: 't2', node: 'nA' }, conf);
    expect(add.json?.code).toBe(7);
    renameSync(`${certDir}.gone`, certDir);
    const st = await plugin({ command: 'STATUS', containerId: 'x', node: 'nA' }, conf);
    expect(st.code, st.stdout).toBe(0);
    expect(pendingFiles(join(dir, 'nA'))).toEqual([]);
    const store = openEtcdHttpStore(parseEtcdConfig((conf['ipam'] as Record<string, unknown>)['etcd']));
    try {
      expect(await store.listAttachments('lftls')).toEqual([]);
    } finally {
      await store.close();
    }
    // the address is free again
    expect(addrOf(await plugin({ command: 'ADD', containerId: 't3', node: 'nA' }, { ...conf, runtimeConfig: { ips: [a] } }))).toBe(a);
    expect((await plugin({ command: 'DEL', containerId: 't3', node: 'nA' }, conf)).code).toBe(0);
  });
});
