import { type ChildProcess, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { fillTemplate, parseEndpoints } from '../../../cmd/install/template.ts';
import { requireStrandPlugin } from '../../helpers/cnitool.ts';
import { CLIENT_SECRET, SERVER_SECRET } from '../../../cmd/certs.ts';
import { buildPauseImage, Containerd, PAUSE_IMAGE as PAUSE, startEtcdInNetns, type NetnsEtcd, type NetnsEtcdTls } from '../../helpers/containerd.ts';
import { probe, startServerWith } from '../../helpers/hostport.ts';
import { OUTCOMES } from '../../../daemon/server.ts';
import { TestDaemon } from '../../helpers/daemon.ts';
import { NetnsSet } from '../../helpers/netns.ts';
import { settled } from '../daemon/harness.ts';
import { refBinDir, repoRoot } from '../../helpers/run-plugin.ts';
import { filesMentioning, linkNames, versionOf } from './fixtures.ts';
import { KubeletPod } from './kubelet.ts';

// containerd end to end: Debian's containerd + runc started by the test, driven through
// the CRI API (RunPodSandbox, PodSandboxStatus, StopPodSandbox, RemovePodSandbox) as the
// kubelet does. containerd runs in a fresh "host" namespace, so the bridge, veths and
// rules its CNI plugins create stay there.

const PODS = 10;

let netns: NetnsSet | undefined;
let ctd: Containerd | undefined;
let etcd: NetnsEtcd | undefined;

afterEach(async () => {
  await etcd?.stop();
  etcd = undefined;
  if (ctd) {
    await removeAllSandboxes(ctd).catch(() => {});
    await ctd.stop();
    ctd = undefined;
  }
  netns?.cleanup();
  netns = undefined;
});

async function removeAllSandboxes(c: Containerd): Promise<void> {
  for (const s of await c.cri().listPodSandbox()) {
    await c.cri().stopPodSandbox(s.id);
    await c.cri().removePodSandbox(s.id);
  }
}

/**
 * Starts containerd in a fresh host namespace with the pause image imported. Its CNI
 * plugins inherit `env`; the shims of a strand install always get a socket of their
 * own (never the machine's /run/strand/cni.sock).
 */
async function startContainerd(streamPort: number, env: Record<string, string> = {}): Promise<{ c: Containerd; host: string }> {
  const tar = buildPauseImage();
  netns = new NetnsSet();
  const host = netns.add('h');
  ctd = await Containerd.start({
    hostNs: host,
    streamPort,
    cgroupParent: `/strand-test-${netns.prefix}`,
    env: { STRAND_DAEMON_SOCKET: join(tmpdir(), `${netns.prefix}-no-daemon.sock`), ...env },
  });
  ctd.importImage(tar);
  return { c: ctd, host };
}

function copyRefPlugins(c: Containerd, names: string[]): void {
  for (const n of names) copyFileSync(join(refBinDir, n), join(c.cniBinDir, n));
}

interface Pod {
  id: string;
  ip: string;
  netns: string;
}

/**
 * Runs PODS sandboxes concurrently, checks each is ready with an address inside
 * `subnetPrefix` that is also on the pod's eth0, that all addresses differ, and that
 * every pod reaches the next one (a ring) and the gateway.
 */
async function runPods(c: Containerd, prefix: string, subnetPrefix: string, gateway: string): Promise<Pod[]> {
  const cri = c.cri();
  const ids = await Promise.all(
    Array.from({ length: PODS }, (_, i) =>
      cri.runPodSandbox({
        metadata: { name: `pod-${i}`, uid: `${prefix}-uid-${i}`, namespace: 'default', attempt: 0 },
        hostname: `pod-${i}`,
        logDirectory: join(c.dir, 'logs', `pod-${i}`),
        labels: { test: prefix },
        linux: { cgroupParent: c.opts.cgroupParent },
      }),
    ),
  );
  const pods: Pod[] = [];
  for (const id of ids) {
    const st = await cri.podSandboxStatus(id);
    expect(st.status.state).toBe('SANDBOX_READY');
    const ip = st.status.network?.ip ?? '';
    expect(ip.startsWith(subnetPrefix), `pod ip ${ip}`).toBe(true);
    const path = await cri.netnsPath(id);
    const addrs = JSON.parse(c.inPod(path, ['ip', '-j', 'addr', 'show', 'eth0'])) as Array<{ addr_info: Array<{ local: string }> }>;
    expect(addrs[0]?.addr_info.map((a) => a.local)).toContain(ip);
    pods.push({ id, ip, netns: path });
  }
  expect(new Set(pods.map((p) => p.ip)).size).toBe(PODS);
  for (const [i, p] of pods.entries()) {
    const next = pods[(i + 1) % PODS]!;
    c.inPod(p.netns, ['ping', '-c', '1', '-W', '2', next.ip]);
    c.inPod(p.netns, ['ping', '-c', '1', '-W', '2', gateway]);
  }
  return pods;
}

/**
 * Stops and removes every pod, then checks sandboxes, netns and host links are gone.
 * `running`: containers and sandboxes still running (their rootfs mounts are not the pods').
 */
async function removePods(c: Containerd, host: string, pods: Pod[], hostLinks: string[], running: string[] = []): Promise<void> {
  expect(linkNames(host).filter((l) => l.startsWith('veth'))).toHaveLength(pods.length);
  for (const p of pods) {
    await c.cri().stopPodSandbox(p.id);
    await c.cri().stopPodSandbox(p.id); // idempotent, as the kubelet expects
    await c.cri().removePodSandbox(p.id);
  }
  expect((await c.cri().listPodSandbox()).filter((x) => !running.includes(x.id))).toEqual([]);
  for (const p of pods) expect(c.inMountNs(['sh', '-c', `test -e '${p.netns}' && echo present || echo gone`]).trim(), p.netns).toBe('gone');
  expect(c.mounts().filter((m) => !running.some((id) => m.includes(`/${id}/`)))).toEqual([]);
  expect(linkNames(host).sort()).toEqual([...hostLinks].sort());
}

async function stopClean(c: Containerd): Promise<void> {
  const left = await c.stop();
  ctd = undefined;
  expect(left).toEqual({ shims: [], mounts: [] });
}

describe('containerd CRI with the reference bridge + host-local (harness check)', () => {
  it(`${PODS} pod sandboxes get addresses, reach each other; removal leaves no links, no IPAM records, no shims, no mounts`, async () => {
    const { c, host } = await startContainerd(24110);
    const prefix = netns!.prefix;
    copyRefPlugins(c, ['loopback', 'bridge', 'host-local', 'portmap']);
    const ipamDir = join(c.dir, 'ipam');
    const conflist = {
      cniVersion: '1.0.0',
      name: `${prefix}-ref`,
      plugins: [
        {
          type: 'bridge',
          bridge: `${prefix}-br`,
          isGateway: true,
          isDefaultGateway: true,
          hairpinMode: true,
          ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: '10.70.0.0/24' }]] },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    };
    writeFileSync(join(c.cniConfDir, '10-ref.conflist'), JSON.stringify(conflist), { mode: 0o644 });
    await c.waitNetworkReady();

    const pods = await runPods(c, prefix, '10.70.0.', '10.70.0.1');
    for (const p of pods) expect(filesMentioning(ipamDir, p.id)).toHaveLength(1);
    await removePods(c, host, pods, [`${prefix}-br`, 'lo']);
    for (const p of pods) expect(filesMentioning(ipamDir, p.id)).toEqual([]);
    await stopClean(c);
  });
});

/** manifests/strand.yaml, parsed: the ConfigMap and the DaemonSet. */
function strandManifest(): { configMap: any; daemonSet: any } {
  const docs = parseAllDocuments(readFileSync(join(repoRoot, 'manifests', 'strand.yaml'), 'utf8')).map((d) => d.toJS());
  return { configMap: docs.find((d) => d.kind === 'ConfigMap'), daemonSet: docs.find((d) => d.kind === 'DaemonSet') };
}

/**
 * `strand certs` (the built binary, with the defaults the docs use) into `dir`, and its
 * two Secrets as the kubelet mounts them: a directory per Secret, one 0400 file per key.
 */
function strandCerts(strand: string, dir: string): { server: string; client: string } {
  execFileSync(strand, ['certs', '--dir', join(dir, 'certs')], { stdio: ['ignore', 'pipe', 'pipe'] });
  const docs = parseAllDocuments(readFileSync(join(dir, 'certs', 'secrets.yaml'), 'utf8')).map((d) => d.toJS());
  const mount = (name: string): string => {
    const secret = docs.find((d) => d.metadata.name === name);
    if (!secret) throw new Error(`secrets.yaml has no ${name}`);
    const d = join(dir, 'secret-volumes', name);
    mkdirSync(d, { recursive: true });
    for (const [k, v] of Object.entries(secret.stringData as Record<string, string>)) writeFileSync(join(d, k), v, { mode: 0o400 });
    return d;
  };
  return { server: mount(SERVER_SECRET), client: mount(CLIENT_SECRET) };
}

/** manifests/etcd.yaml's mutual-TLS flags, its Secret's mount path pointed at the server Secret's files. */
function etcdManifestTls(certs: { server: string; client: string }): NetnsEtcdTls {
  const dep = parseAllDocuments(readFileSync(join(repoRoot, 'manifests', 'etcd.yaml'), 'utf8'))
    .map((d) => d.toJS())
    .find((d) => d?.kind === 'Deployment');
  const container = dep.spec.template.spec.containers[0];
  const mountPath: string = container.volumeMounts.find((m: any) => m.name === 'tls').mountPath;
  const flags = (container.command as string[])
    .filter((a) => /^--(cert-file|key-file|trusted-ca-file|client-cert-auth)\b/.test(a))
    .map((a) => a.replace(mountPath, certs.server));
  expect(flags).toHaveLength(4);
  expect(flags).toContain('--client-cert-auth');
  return { flags, client: { ca: join(certs.client, 'ca.crt'), cert: join(certs.client, 'tls.crt'), key: join(certs.client, 'tls.key') } };
}

/**
 * The etcd client port refuses what is not mutual TLS: a plain-HTTP request (etcd's TLS
 * listener answers 400, no key is read) and TLS without a client certificate.
 */
function expectPlainHttpRefused(ns: string, port: number, clientDir: string): void {
  const script = `fetch('http://127.0.0.1:${port}/v3/kv/range', { method: 'POST', body: JSON.stringify({ key: 'Lw==', range_end: 'MA==' }) })
    .then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() })), (e) => console.log(JSON.stringify({ error: String(e.cause?.code ?? e) })))`;
  const plain = JSON.parse(execFileSync('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { encoding: 'utf8' }));
  expect(plain.status ?? plain.error, JSON.stringify(plain)).not.toBe(200);
  expect(JSON.stringify(plain)).not.toMatch(/"kvs"|"header"/);
  if (plain.status !== undefined) expect(plain.body).toMatch(/HTTP request to an HTTPS server/);
  const etcdctl = (args: string[]) =>
    execFileSync('nsenter', [`--net=/run/netns/${ns}`, '/usr/bin/etcdctl', '--dial-timeout=2s', '--command-timeout=3s', ...args, 'get', '/'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: '/usr/bin:/bin', ETCDCTL_API: '3' },
    });
  expect(() => etcdctl([`--endpoints=http://127.0.0.1:${port}`])).toThrow();
  expect(() => etcdctl([`--endpoints=https://127.0.0.1:${port}`, `--cacert=${join(clientDir, 'ca.crt')}`])).toThrow();
  etcdctl([
    `--endpoints=https://127.0.0.1:${port}`,
    `--cacert=${join(clientDir, 'ca.crt')}`,
    `--cert=${join(clientDir, 'tls.crt')}`,
    `--key=${join(clientDir, 'tls.key')}`,
  ]);
}

/**
 * strand installed by `strand install` from the DaemonSet's template (here straight
 * into containerd's CNI dirs) with strand-ipam on an etcd in the host namespace; `main`
 * replaces the template's strand-bridge (the reference bridge proves strand-ipam alone).
 * The bin dir is empty before the install step, as on a node without the reference
 * plugins: every plugin the pods need comes from strand, loopback (which containerd runs
 * for every pod) and strand-portmap included; only the reference bridge is put there
 * first when the template names it (install refuses a chain it cannot run).
 */
/**
 * strand installed by `strand install` from the DaemonSet's template; with `d`, a daemon
 * in the node's network namespace (as the DaemonSet's, hostNetwork) serves the pods,
 * then, stopped, leaves the next pods to the standalone fallback.
 */
async function strandIpamCase(main: 'strand-bridge' | 'bridge', streamPort: number, d?: TestDaemon): Promise<void> {
  requireStrandPlugin('strand-ipam');
  if (main === 'strand-bridge') requireStrandPlugin('strand-bridge');
  const strand = requireStrandPlugin('strand');
  const { c, host } = await startContainerd(streamPort, d ? { STRAND_DAEMON_SOCKET: d.socket } : {});
  await d?.start({ netns: host });
  const prefix = netns!.prefix;
  // etcd as manifests/etcd.yaml runs it: mutual TLS with the certificates of `strand certs`
  const certs = strandCerts(strand, c.dir);
  etcd = await startEtcdInNetns(host, join(c.dir, 'etcd'), streamPort + 1, streamPort + 2, etcdManifestTls(certs));
  expect(etcd.endpoint).toMatch(/^https:/);
  expectPlainHttpRefused(host, streamPort + 1, certs.client);
  const template = join(c.dir, 'conflist.template');
  const text: string = strandManifest().configMap.data['conflist.template'];
  // no agent runs here: this file stands in for the pod MTU it writes (mtuFile)
  const mtuFile = join(c.dir, 'pod-mtu');
  writeFileSync(mtuFile, '1500\n');
  // strand-ipam's node-local state (the journal of pending releases) in the test's directory
  const ipamDir = join(c.dir, 'ipam');
  writeFileSync(
    template,
    text
      .replace('"type": "strand-bridge"', `"type": "${main}"`)
      .replace('"/run/strand/pod-mtu"', JSON.stringify(mtuFile))
      .replace('"type": "strand-ipam",', `"type": "strand-ipam", "dataDir": ${JSON.stringify(ipamDir)},`),
  );
  const install = () =>
    execFileSync(strand, ['install', `--bin-dir=${c.cniBinDir}`, `--conf-dir=${c.cniConfDir}`, `--template=${template}`, `--etcd-tls-dir=${certs.client}`], {
      env: { PATH: '/usr/bin:/bin', K8S_NODE_NAME: `node-${prefix}`, STRAND_ETCD_ENDPOINTS: etcd!.endpoint },
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
    });
  expect(readdirSync(c.cniBinDir), 'an empty /opt/cni/bin before the install step').toEqual([]);
  if (main === 'bridge') {
    // the template names the reference bridge, which this node lacks: the install fails, naming it
    expect(install).toThrow(/needs plugin "bridge"/);
    expect(readdirSync(c.cniConfDir), 'no conflist written').toEqual([]);
    copyRefPlugins(c, ['bridge']);
  }
  install();
  const installed = readdirSync(c.cniBinDir).sort();
  expect(installed).toEqual(
    [
      ...(main === 'bridge' ? ['bridge'] : []),
      '.strand-installed.json',
      'loopback',
      'strand',
      'strand-bridge',
      'strand-ipam',
      'strand-ipvlan',
      'strand-lib',
      'strand-macvlan',
      'strand-portmap',
    ].sort(),
  );
  // loopback is the shim too: one file under every plugin name strand installs
  expect(statSync(join(c.cniBinDir, 'loopback')).ino).toBe(statSync(join(c.cniBinDir, 'strand-bridge')).ino);
  const list = JSON.parse(readFileSync(join(c.cniConfDir, '10-strand.conflist'), 'utf8'));
  expect(list.plugins.map((p: { type: string }) => p.type)).toEqual([main, 'strand-portmap']);
  expect(list.plugins[0].ipam.etcd.tls.cert).toBe(join(c.cniConfDir, 'strand-etcd', 'tls.crt'));
  await c.waitNetworkReady();

  const ipamLs = () =>
    JSON.parse(
      execFileSync('nsenter', [`--net=/run/netns/${host}`, strand, 'ipam', '--conf', join(c.cniConfDir, '10-strand.conflist'), '--json', 'ls'], {
        encoding: 'utf8',
      }),
    ) as Array<{ containerId: string; node: string; ips: Array<{ ip: string }>; pendingRelease?: { since: string } }>;
  const pods = await runPods(c, prefix, '10.244.', '10.244.0.1');
  // strand's loopback brought lo up in every pod (containerd runs it before the conflist)
  for (const p of pods) expect(c.inPod(p.netns, ['ip', '-o', 'link', 'show', 'lo'])).toMatch(/<LOOPBACK,UP,LOWER_UP>/);

  // a pod with a hostPort, reached from the node on its address and on localhost
  const hostPod = await runHostPortPod(c, prefix);
  pods.push(hostPod.pod);
  const records = ipamLs();
  expect(records.map((r) => r.containerId).sort()).toEqual(pods.map((p) => p.id).sort());
  for (const r of records) {
    expect(r.node).toBe(`node-${prefix}`);
    expect(r.ips.map((i) => i.ip.split('/')[0])).toContain(pods.find((p) => p.id === r.containerId)!.ip);
  }
  for (const addr of ['10.244.0.1', '127.0.0.1']) {
    expect(await probe(host, 'tcp', addr, HOST_PORT), `node -> ${addr}:${HOST_PORT}`).toMatchObject({ ok: true, name: 'hostport-pod' });
  }
  hostPod.server.kill('SIGKILL');

  const all = [...pods];
  if (main === 'strand-bridge') {
    // a pod deleted while etcd is stopped: the sandbox goes at once, its release is
    // recorded on the node and its address stays allocated until etcd is back
    const gone = pods.shift() as Pod;
    process.kill(etcd.pid, 'SIGSTOP');
    try {
      const t0 = Date.now();
      await c.cri().stopPodSandbox(gone.id);
      await c.cri().removePodSandbox(gone.id);
      const ms = Date.now() - t0;
      console.log(`sandbox stopped and removed in ${ms} ms with etcd stopped`);
      expect(ms).toBeLessThan(10_000);
      expect((await c.cri().listPodSandbox()).map((x) => x.id)).not.toContain(gone.id);
      expect(readdirSync(join(ipamDir, '.strand-ipam-pending')).filter((n) => n.endsWith('.json'))).toHaveLength(1);
    } finally {
      process.kill(etcd.pid, 'SIGCONT');
    }
    expect(ipamLs().find((r) => r.containerId === gone.id)?.pendingRelease?.since).toMatch(/^\d{4}-/);
  }

  // the other pods' DELs (strand-ipam calls on this node) complete the pending release too
  await removePods(c, host, pods, ['strand0', 'lo']);
  expect(ipamLs()).toEqual([]);
  const keys = etcd.etcdctl(['get', '--prefix', '/strand']);
  for (const p of all) expect(keys).not.toContain(p.id);
  const nat = execFileSync('ip', ['netns', 'exec', host, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' });
  for (const p of all) expect(nat).not.toContain(p.ip);
  expect(nat).not.toContain('CNI-DN-');
  if (d) {
    // every call of the chain (loopback, strand-bridge, strand-portmap) went through the
    // daemon and was served (the DEL while etcd was stopped too: it succeeded); then, the daemon stopped, pods come up through the fallback
    const calls = await settled(d, 2 * all.length);
    expect(calls.filter((o) => o === 'strand-bridge ADD: done 0')).toHaveLength(all.length);
    expect(calls.filter((o) => o.startsWith('strand-bridge DEL')).length).toBeGreaterThanOrEqual(all.length);
    expect(calls.filter((o) => !o.endsWith(': done 0'))).toEqual([]);
    await d.stop(5000);
    const fallback = await runPods(c, `${prefix}f`, '10.244.', '10.244.0.1');
    await removePods(c, host, fallback, ['strand0', 'lo']);
    expect(ipamLs()).toEqual([]);
  }
  if (main === 'strand-bridge') {
    // the uninstall: nothing of strand's stays on the node, and etcd forgets the node
    const un = execFileSync(
      'nsenter',
      [
        `--net=/run/netns/${host}`,
        join(c.cniBinDir, 'strand'),
        'install',
        '--uninstall',
        '--node-state',
        `--bin-dir=${c.cniBinDir}`,
        `--conf-dir=${c.cniConfDir}`,
        `--agent-state-file=${join(c.dir, 'run', 'agent.json')}`,
        `--pod-mtu-file=${mtuFile}`,
        `--log-dir=${join(c.dir, 'log')}`,
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } },
    );
    expect(un).toBe('');
    expect(linkNames(host)).toEqual(['lo']);
    expect(readdirSync(c.cniBinDir)).toEqual([]);
    expect(readdirSync(c.cniConfDir)).toEqual([]);
    expect(existsSync(mtuFile)).toBe(false);
    expect(readdirSync(ipamDir)).toEqual([]);
    const after = execFileSync('ip', ['netns', 'exec', host, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' });
    expect(after).not.toMatch(/CNI-|strand/);
    expect(etcd.etcdctl(['get', '--prefix', '/strand', '--keys-only']).trim()).toBe('');
  }
  await etcd.stop();
  etcd = undefined;
  await stopClean(c);
}

const HOST_PORT = 34180;

/** One more sandbox with a hostPort, and the probe server listening in it. */
async function runHostPortPod(c: Containerd, prefix: string): Promise<{ pod: Pod; server: ChildProcess }> {
  const id = await c.cri().runPodSandbox({
    metadata: { name: 'hostport', uid: `${prefix}-uid-hp`, namespace: 'default', attempt: 0 },
    hostname: 'hostport',
    logDirectory: join(c.dir, 'logs', 'hostport'),
    labels: { test: prefix },
    portMappings: [{ protocol: 'TCP', containerPort: HOST_PORT, hostPort: HOST_PORT }],
    linux: { cgroupParent: c.opts.cgroupParent },
  });
  const st = await c.cri().podSandboxStatus(id);
  expect(st.status.state).toBe('SANDBOX_READY');
  const path = await c.cri().netnsPath(id);
  const server = await startServerWith(c.podCommand(path), 'hostport-pod', HOST_PORT);
  return { pod: { id, ip: st.status.network?.ip ?? '', netns: path }, server };
}

describe('containerd CRI with strand-ipam on etcd, installed by `strand install` from the DaemonSet template', () => {
  it(`through strand daemon (a pod deleted while etcd is stopped too), then with the daemon stopped through the fallback: ${PODS} pods each, nothing left, the node-state uninstall leaves nothing of strand's`, async () => {
    const d = new TestDaemon();
    try {
      await strandIpamCase('strand-bridge', 31130, d);
    } finally {
      await d.stop(5000);
    }
  });

  it(`strand-bridge on a node with an empty bin dir: ${PODS} pod sandboxes get addresses (lo up by strand's loopback), reach each other; a hostPort pod is reached from the node; a pod deleted while etcd is stopped goes at once and its address is released once etcd is back; removal leaves no links, no IPAM records, no rules, no shims, no mounts; the node-state uninstall leaves nothing of strand's`, async () => {
    await strandIpamCase('strand-bridge', 24130);
  });

  it(`reference bridge: install refuses the chain until the bridge is there; ${PODS} pod sandboxes get addresses, reach each other; hostPort; removal leaves nothing`, async () => {
    await strandIpamCase('bridge', 24150);
  });
});

/** Builds the strand image with scripts/image.sh and imports it; returns its name. */
function importStrandImage(c: Containerd, prefix: string): string {
  const image = `localhost/strand-test/strand:${prefix}`;
  const tar = join(c.dir, 'strand-image.tar');
  execFileSync('bash', [join(repoRoot, 'scripts', 'image.sh'), '--out', tar, '--name', image], { stdio: ['ignore', 'ignore', 'pipe'] });
  c.importImage(tar);
  return image;
}

/**
 * Host directories standing in for the node's, one per DaemonSet volume: the two
 * hostPaths, the ConfigMap volume (a directory with one file per key) and the
 * strand-etcd-tls Secret volume (`tlsDir`: its files, or an empty directory when the
 * optional Secret does not exist).
 */
function nodeDirs(c: Containerd, configMapData: Record<string, string>, tlsDir?: string): Record<string, string> {
  const node = join(c.dir, 'node');
  const volumes: Record<string, string> = {
    'cni-bin': join(node, 'opt/cni/bin'),
    'cni-conf': join(node, 'etc/cni/net.d'),
    config: join(node, 'configmap'),
    'etcd-tls': tlsDir ?? join(node, 'no-secret'),
    'strand-run': join(node, 'run/strand'),
    'cni-log': join(node, 'var/log/strand'),
    'cni-ipam': join(node, 'var/lib/cni/networks'),
  };
  for (const d of Object.values(volumes)) mkdirSync(d, { recursive: true });
  for (const [k, v] of Object.entries(configMapData)) writeFileSync(join(volumes['config']!, k), v);
  return volumes;
}

describe('the DaemonSet pod run through the CRI as the kubelet runs it (manifest security contexts)', () => {
  it('the init container, unprivileged (uid 0, no capabilities, read-only root, seccomp RuntimeDefault), fills the bin and conf dirs and exits 0; a re-run changes nothing', async () => {
    const strand = requireStrandPlugin('strand');
    const { c } = await startContainerd(24140);
    const prefix = netns!.prefix;
    const image = importStrandImage(c, prefix);

    const { configMap, daemonSet } = strandManifest();
    const spec = daemonSet.spec.template.spec;
    const container = spec.initContainers[0];
    expect(container.name).toBe('install');
    expect(container.securityContext.privileged).toBeUndefined();
    const certs = strandCerts(strand, c.dir);
    const volumes = nodeDirs(c, configMap.data, certs.client);
    const inputs = { image, fields: { 'spec.nodeName': 'node-img' }, configMap: { name: configMap.metadata.name, data: configMap.data }, volumes };
    const pod = new KubeletPod(c, `${prefix}-ds`, spec, inputs);
    const cfg = pod.containerConfig(container);
    // what the runtime is asked for: no privileges, every capability dropped, seccomp on
    expect(cfg.linux?.securityContext).toMatchObject({
      capabilities: { dropCapabilities: ['ALL'] },
      runAsUser: { value: 0 },
      readonlyRootfs: true,
      noNewPrivs: true,
      seccomp: { profileType: 'RuntimeDefault' },
      namespaceOptions: { network: 'NODE' },
    });
    expect(cfg.linux?.securityContext?.privileged).toBeUndefined();
    expect(cfg.command).toEqual(['/strand']);
    expect(cfg.args?.[0]).toBe('install');
    expect(cfg.args).not.toContain('--sleep');
    await pod.runSandbox();
    const first = await pod.runToCompletion(container);
    expect(first.exitCode, first.log).toBe(0);
    expect(first.log).toContain('strand install: libraries libatomic.so.1 in /host/opt/cni/bin/strand-lib: written');
    // what containerd made of it: the OCI spec runc ran the installer with
    const oci = JSON.parse((await c.cri().containerStatus(first.id, true)).info['info'] ?? '{}').runtimeSpec;
    expect(oci.process.user.uid).toBe(0);
    for (const set of ['bounding', 'effective', 'permitted']) expect(oci.process.capabilities?.[set] ?? [], set).toEqual([]);
    expect(oci.process.noNewPrivileges).toBe(true);
    expect(oci.root.readonly).toBe(true);
    expect(oci.linux.seccomp?.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(oci.linux.readonlyPaths).toContain('/proc/sys');

    const bin = volumes['cni-bin']!;
    // strand's names and loopback (the node's bin dir has none), the record of them, strand-lib/
    const names = ['loopback', 'strand', 'strand-bridge', 'strand-ipam', 'strand-ipvlan', 'strand-macvlan', 'strand-portmap'];
    expect(readdirSync(bin).sort()).toEqual(['.strand-installed.json', ...names, 'strand-lib'].sort());
    expect(readdirSync(join(bin, 'strand-lib'))).toEqual(['libatomic.so.1']);
    // strand, and the shim (embedded in it) under every plugin name
    const ino = statSync(join(bin, 'strand-bridge')).ino;
    for (const n of names.filter((x) => x !== 'strand')) expect(statSync(join(bin, n)).ino).toBe(ino);
    expect(readFileSync(join(bin, 'strand-bridge')).equals(readFileSync(join(repoRoot, 'dist', 'bin', 'strand-shim')))).toBe(true);
    expect(readFileSync(join(bin, 'strand')).equals(readFileSync(strand))).toBe(true);
    const conf = volumes['cni-conf']!;
    expect(readdirSync(conf).sort()).toEqual(['10-strand.conflist', 'strand-etcd']);
    expect(statSync(join(conf, '10-strand.conflist')).mode & 0o777).toBe(0o644);
    for (const f of ['ca.crt', 'tls.crt', 'tls.key']) {
      expect(statSync(join(conf, 'strand-etcd', f)).mode & 0o777).toBe(0o600);
      expect(readFileSync(join(conf, 'strand-etcd', f))).toEqual(readFileSync(join(certs.client, f)));
    }
    const hostConf = (n: string) => `/etc/cni/net.d/strand-etcd/${n}`;
    const expected = fillTemplate(configMap.data['conflist.template'], {
      NODE_NAME: 'node-img',
      ETCD_ENDPOINTS: parseEndpoints(configMap.data['etcd-endpoints']),
      ETCD_CA: hostConf('ca.crt'),
      ETCD_CERT: hostConf('tls.crt'),
      ETCD_KEY: hostConf('tls.key'),
    }).text;
    expect(readFileSync(join(conf, '10-strand.conflist'), 'utf8')).toBe(expected);
    const v = versionOf(join(bin, 'strand-bridge'));
    expect(v.supportedVersions).toContain('1.1.0');

    const inodes = () => [...names, '.strand-installed.json'].map((n) => statSync(join(bin, n)).ino).concat(statSync(join(conf, '10-strand.conflist')).ino);
    const before = inodes();
    await pod.remove();
    const again = new KubeletPod(c, `${prefix}-ds2`, spec, inputs);
    await again.runSandbox();
    const second = await again.runToCompletion(container);
    expect(second.exitCode, second.log).toBe(0);
    expect(inodes()).toEqual(before);
    await again.remove();
    await stopClean(c);
  });

  it('without the strand-etcd-tls Secret and with the https endpoint, the init container fails with a message naming the Secret', async () => {
    requireStrandPlugin('strand');
    const { c } = await startContainerd(24190);
    const prefix = netns!.prefix;
    const image = importStrandImage(c, prefix);
    const { configMap, daemonSet } = strandManifest();
    const spec = daemonSet.spec.template.spec;
    const volumes = nodeDirs(c, configMap.data);
    const pod = new KubeletPod(c, `${prefix}-ds`, spec, {
      image,
      fields: { 'spec.nodeName': 'n' },
      configMap: { name: configMap.metadata.name, data: configMap.data },
      volumes,
    });
    await pod.runSandbox();
    const r = await pod.runToCompletion(spec.initContainers[0]);
    expect(r.exitCode).toBe(1);
    expect(r.log).toContain('etcd endpoints use https but /etc/strand/etcd-tls holds none of ca.crt, tls.crt, tls.key: create the Secret strand-etcd-tls');
    expect(readdirSync(volumes['cni-conf']!)).toEqual([]);
    await pod.remove();
    await stopClean(c);
  });

  it("then the agent container (NET_ADMIN only) on an etcd with the manifest's mutual TLS: readiness follows etcd, proxy ARP on the pod bridge, SIGTERM ends it within the grace period, routes stay", async () => {
    const strand = requireStrandPlugin('strand');
    const { c, host } = await startContainerd(24180);
    const prefix = netns!.prefix;
    const image = importStrandImage(c, prefix);
    const certs = strandCerts(strand, c.dir);
    const tls = etcdManifestTls(certs);
    const etcdDir = join(c.dir, 'etcd');
    etcd = await startEtcdInNetns(host, etcdDir, 24181, 24182, tls);
    expectPlainHttpRefused(host, 24181, certs.client);

    // the node's underlay (status.hostIP), a peer node on it owning one block, and the
    // pod bridge with its gateway address as the first pod ADD leaves it
    const ipn = (args: string[]) => execFileSync('ip', ['-n', host, ...args], { encoding: 'utf8' });
    ipn(['link', 'add', `${prefix}-up`, 'type', 'veth', 'peer', 'name', `${prefix}-uq`]);
    ipn(['addr', 'add', '192.0.2.1/24', 'dev', `${prefix}-up`]);
    for (const l of [`${prefix}-up`, `${prefix}-uq`]) ipn(['link', 'set', l, 'up']);
    ipn(['link', 'add', `${prefix}-br`, 'type', 'bridge']);
    ipn(['addr', 'add', '10.244.0.1/16', 'dev', `${prefix}-br`]);
    ipn(['link', 'set', `${prefix}-br`, 'up']);
    const { configMap, daemonSet } = strandManifest();
    const etcdPrefix: string = JSON.parse(configMap.data['conflist.template']).plugins[0].ipam.etcd.prefix;
    etcd.etcdctl(['put', `${etcdPrefix}/nodes/peer`, JSON.stringify({ name: 'peer', addresses: ['192.0.2.2'], mode: 'host-gw' })]);
    etcd.etcdctl(['put', `${etcdPrefix}/affinity/strand/10.244.1.0-26`, JSON.stringify({ network: 'strand', cidr: '10.244.1.0/26', node: 'peer' })]);

    // the ConfigMap pointed at this etcd (same scheme as shipped: https), as an operator would edit it
    const shipped = new URL(configMap.data['etcd-endpoints']);
    expect(shipped.protocol).toBe('https:');
    const data = { ...configMap.data, 'etcd-endpoints': etcd.endpoint };
    expect(new URL(etcd.endpoint).protocol).toBe(shipped.protocol);
    const spec = daemonSet.spec.template.spec;
    const volumes = nodeDirs(c, data, certs.client);
    const pod = new KubeletPod(c, `${prefix}-ds`, spec, {
      image,
      fields: { 'spec.nodeName': 'node-img', 'status.hostIP': '192.0.2.1' },
      configMap: { name: configMap.metadata.name, data },
      volumes,
    });
    await pod.runSandbox();
    const install = await pod.runToCompletion(spec.initContainers[0]);
    expect(install.exitCode, install.log).toBe(0);

    const agentSpec = spec.containers.find((x: any) => x.name === 'agent');
    expect(agentSpec.name).toBe('agent');
    const cfg = pod.containerConfig(agentSpec);
    expect(cfg.args).toContain('--node-ip=192.0.2.1');
    expect(cfg.args).toContain(`--mode=${configMap.data['agent-mode']}`);
    const id = await pod.start(agentSpec);
    // not privileged: NET_ADMIN only, /proc/sys read-only (proxy ARP goes through rtnetlink)
    const oci = JSON.parse((await c.cri().containerStatus(id, true)).info['info'] ?? '{}').runtimeSpec;
    for (const set of ['bounding', 'effective', 'permitted']) expect(oci.process.capabilities?.[set], set).toEqual(['CAP_NET_ADMIN']);
    expect(oci.process.noNewPrivileges).toBe(true);
    expect(oci.linux.readonlyPaths).toContain('/proc/sys');
    expect(oci.linux.seccomp?.defaultAction).toBe('SCMP_ACT_ERRNO');
    let probes = 0;
    // the probes as the kubelet runs them: an HTTP GET from the node (the host network)
    const httpGet = (p: { host: string; path: string; port: number }): { code: number; out: string } => {
      const url = `http://${p.host}:${p.port}${p.path}`;
      const script = `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(3000) }).then(async (r) => console.log(JSON.stringify({ code: r.status, out: await r.text() })), () => console.log('{"code":-1,"out":""}'))`;
      return JSON.parse(execFileSync('ip', ['netns', 'exec', host, process.execPath, '-e', script], { encoding: 'utf8' }));
    };
    // the readiness probe: 200 ready, 503 not (0 for "no answer" is a failure too)
    const probe = (): { code: number; out: string } => {
      probes++;
      const r = httpGet(agentSpec.readinessProbe.httpGet);
      return { code: r.code === 200 ? 0 : 1, out: r.out };
    };
    const waitProbe = async (want: number, what: string): Promise<string> => {
      const deadline = Date.now() + 90_000;
      for (;;) {
        const r = await probe();
        if (r.code === want) return r.out;
        const st = await c.cri().containerStatus(id);
        if (Date.now() > deadline || st.status.state === 'CONTAINER_EXITED')
          throw new Error(`probe never ${what} (last exit ${r.code}: ${r.out})\nagent log:\n${pod.logs()}`);
        await new Promise((res) => setTimeout(res, 500));
      }
    };
    const agentRoutes = () => JSON.parse(ipn(['-j', 'route', 'show', 'proto', '115'])) as Array<{ dst: string; gateway?: string }>;
    const proxyArp = () => execFileSync('ip', ['netns', 'exec', host, 'cat', `/proc/sys/net/ipv4/conf/${prefix}-br/proxy_arp`], { encoding: 'utf8' }).trim();
    // `strand agent status` in the container: the state file's view, errors included
    const status = async () => {
      const r = await c.cri().execSync(id, ['/strand', 'agent', 'status'], 10);
      return r.stdout + r.stderr;
    };
    expect(await waitProbe(0, 'ready'), pod.logs()).toBe('ok\n');
    expect(agentRoutes()).toMatchObject([{ dst: '10.244.1.0/26', gateway: '192.0.2.2' }]);
    expect(httpGet(agentSpec.livenessProbe.httpGet)).toEqual({ code: 200, out: 'ok\n' });
    const metrics = httpGet({ ...agentSpec.livenessProbe.httpGet, path: '/metrics' });
    expect(metrics.code).toBe(200);
    expect(metrics.out).toMatch(/^strand_agent_routes\{kind="block"\} 1$/m);
    // the pod MTU for strand-bridge, in the host directory the DaemonSet mounts
    expect(readFileSync(join(volumes['strand-run']!, 'pod-mtu'), 'utf8')).toMatch(/^\d+\n$/);
    // proxy ARP on the pod bridge, set through rtnetlink with NET_ADMIN alone
    const deadline = Date.now() + 10_000;
    while (proxyArp() !== '1' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(proxyArp(), await status()).toBe('1');
    expect(await status()).not.toMatch(/^error:/m);
    const pid = /^\S+\s+(\d+)/.exec(
      c
        .ctr(['task', 'ls'])
        .split('\n')
        .find((l) => l.startsWith(id)) ?? '',
    )?.[1];
    const rss = pid && existsSync(`/proc/${pid}/status`) ? /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] : undefined;
    console.log(
      `agent container: ready after ${probes} probe(s), RSS ${rss ? `${Math.round(Number(rss) / 1024)} MiB` : '?'} (request ${agentSpec.resources.requests.memory})`,
    );

    // etcd gone: not ready (routes stay), still alive; back: ready again
    await etcd.stop();
    expect(await waitProbe(1, 'went unready with etcd down')).toMatch(/^not ready: not synced with etcd/);
    expect(httpGet(agentSpec.livenessProbe.httpGet).code).toBe(200);
    expect(agentRoutes()).toMatchObject([{ dst: '10.244.1.0/26', gateway: '192.0.2.2' }]);
    etcd = await startEtcdInNetns(host, etcdDir, 24181, 24182, tls);
    await waitProbe(0, 'ready again after etcd came back');

    // the kubelet stopping the pod: SIGTERM, then SIGKILL after the grace period
    const t0 = Date.now();
    await c.cri().stopContainer(id, spec.terminationGracePeriodSeconds);
    const ms = Date.now() - t0;
    const st = await c.cri().containerStatus(id);
    expect(st.status.state).toBe('CONTAINER_EXITED');
    expect(st.status.exitCode, pod.logs()).toBe(0);
    expect(ms).toBeLessThan(spec.terminationGracePeriodSeconds * 1000);
    console.log(`agent container: exited ${ms} ms after SIGTERM`);
    expect(pod.logs()).toMatch(/SIGTERM: stopping \(routes stay in place\)/);
    expect(agentRoutes()).toMatchObject([{ dst: '10.244.1.0/26', gateway: '192.0.2.2' }]);
    // the node record stays (no lease): peers keep their routes to this node's blocks
    expect(etcd.etcdctl(['get', `${etcdPrefix}/nodes/node-img`, '--print-value-only'])).toContain('"192.0.2.1"');
    await pod.remove();
    await etcd.stop();
    etcd = undefined;
    await stopClean(c);
  });
});

describe('the daemon container of the DaemonSet, run through the CRI as the kubelet runs it', () => {
  it("serves the CRI pods' CNI calls through the installed shims (the node's iptables through strand-nsexec from a distroless image); stopped, the pods come up through the fallback", async () => {
    const strand = requireStrandPlugin('strand');
    // stands in for the node's /run/strand: containerd's shims are told the socket in it
    const runDir = mkdtempSync(join(tmpdir(), 'strand-run-'));
    onTestFinished(() => rmSync(runDir, { recursive: true, force: true }));
    const { c, host } = await startContainerd(31140, { STRAND_DAEMON_SOCKET: join(runDir, 'cni.sock') });
    const prefix = netns!.prefix;
    const image = importStrandImage(c, prefix);
    const certs = strandCerts(strand, c.dir);
    etcd = await startEtcdInNetns(host, join(c.dir, 'etcd'), 31141, 31142, etcdManifestTls(certs));
    const { configMap, daemonSet } = strandManifest();
    const spec = daemonSet.spec.template.spec;
    // no agent runs here: a file in the IPAM data dir (mounted at the same path in the
    // daemon container) stands in for the pod MTU it writes (mtuFile)
    const ipamData = join(c.dir, 'node', 'var/lib/cni/networks');
    mkdirSync(ipamData, { recursive: true });
    const mtuFile = join(ipamData, 'pod-mtu');
    writeFileSync(mtuFile, '1500\n');
    const data = {
      ...configMap.data,
      'etcd-endpoints': etcd.endpoint,
      'conflist.template': (configMap.data['conflist.template'] as string).replace('"/run/strand/pod-mtu"', JSON.stringify(mtuFile)),
    };
    // containerd's own CNI directories are "the node's" here
    const volumes: Record<string, string> = {
      ...nodeDirs(c, data, certs.client),
      'cni-bin': c.cniBinDir,
      'cni-conf': c.cniConfDir,
      'cni-ipam': ipamData,
      'strand-run': runDir,
    };
    // The DaemonSet mounts each directory at the node's path; the node's paths are temp
    // directories here, so the daemon container gets them at theirs (the socket's
    // directory stays /run/strand: the shims are told its host path).
    const daemonSpec = spec.containers.find((x: any) => x.name === 'daemon');
    const samePath = {
      ...daemonSpec,
      volumeMounts: daemonSpec.volumeMounts.map((m: any) => (m.name === 'strand-run' ? m : { ...m, mountPath: volumes[m.name] })),
    };
    const pod = new KubeletPod(
      c,
      `${prefix}-ds`,
      { ...spec, containers: [samePath] },
      {
        image,
        fields: { 'spec.nodeName': `node-${prefix}`, 'status.hostIP': '192.0.2.1' },
        configMap: { name: configMap.metadata.name, data },
        volumes,
      },
    );
    await pod.runSandbox();
    // the conflist names the TLS files at the node's conf dir: containerd's here
    const init = spec.initContainers[0];
    const installer = { ...init, args: init.args.map((a: string) => (a.startsWith('--host-conf-dir=') ? `--host-conf-dir=${c.cniConfDir}` : a)) };
    expect(installer.args).toContain(`--host-conf-dir=${c.cniConfDir}`);
    const install = await pod.runToCompletion(installer);
    expect(install.exitCode, install.log).toBe(0);
    const id = await pod.start(samePath);
    try {
      const deadline = Date.now() + 60_000;
      for (let i = 0; ; i++) {
        try {
          c.ctr(['task', 'exec', '--exec-id', `probe-${i}`, id, ...daemonSpec.readinessProbe.exec.command]);
          break;
        } catch (e) {
          if (Date.now() > deadline) throw new Error(`daemon never ready: ${(e as Error).message}\n${pod.logs()}`);
          await new Promise((r) => setTimeout(r, 250));
        }
      }
      // the liveness probe as the kubelet runs it for a host-network pod: from the node
      expect(httpGetFromNode(host, daemonSpec.livenessProbe.httpGet), pod.logs()).toBe(200);
      await c.waitNetworkReady();
      const nat = (): string => execFileSync('ip', ['netns', 'exec', host, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' });
      const served = await runPods(c, `${prefix}d`, '10.244.', '10.244.0.1');
      for (const p of served) expect(nat(), "masquerade by the node's iptables").toContain(p.ip);
      const sandboxId = (await c.cri().listPodSandbox()).find((x) => x.metadata.name.startsWith(`${prefix}-ds`))?.id;
      await removePods(c, host, served, ['strand0', 'lo'], [id, ...(sandboxId ? [sandboxId] : [])]);

      // the kubelet stopping the daemon container: the socket goes, the pods keep coming
      c.ctr(['task', 'kill', '-s', 'SIGTERM', id]);
      expect(await pod.waitExit(id, spec.terminationGracePeriodSeconds * 1000), pod.logs()).toBe(0);
      const counts = JSON.parse(/stopped \((\{.*\})\)/.exec(pod.logs())?.[1] ?? '{}') as Record<string, number>;
      expect(counts['done'], pod.logs()).toBeGreaterThanOrEqual(2 * PODS); // every strand-bridge ADD and DEL
      for (const o of OUTCOMES) if (o !== 'done') expect(counts[o] ?? 0, o).toBe(0);
      expect(existsSync(join(runDir, 'cni.sock'))).toBe(false);

      const fallback = await runPods(c, `${prefix}f`, '10.244.', '10.244.0.1');
      for (const p of fallback) expect(nat()).toContain(p.ip);
      await removePods(c, host, fallback, ['strand0', 'lo'], sandboxId ? [sandboxId] : []);
      for (const p of [...served, ...fallback]) expect(nat()).not.toContain(p.ip);
    } finally {
      await pod.remove();
    }
    await etcd.stop();
    etcd = undefined;
    await stopClean(c);
  });
});

/** manifests/etcd.yaml's Deployment, parsed. */
function etcdDeployment(): any {
  return parseAllDocuments(readFileSync(join(repoRoot, 'manifests', 'etcd.yaml'), 'utf8'))
    .map((d) => d.toJS())
    .find((d) => d?.kind === 'Deployment');
}

/** An httpGet probe as the kubelet runs it for a host-network pod: from the node's network namespace. */
function httpGetFromNode(ns: string, probe: { host: string; port: number; path: string }): number {
  const url = `http://${probe.host}:${probe.port}${probe.path}`;
  const script = `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(2000) }).then((r) => console.log(r.status), () => console.log(0))`;
  return Number(execFileSync('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { encoding: 'utf8' }).trim());
}

describe("manifests/etcd.yaml's pod run through the CRI as the kubelet runs it", () => {
  it('etcd starts with the manifest command, Secret mount and security context (no capabilities, read-only root, seccomp), passes its probe, serves mutual TLS only', async () => {
    const strand = requireStrandPlugin('strand');
    const { c, host } = await startContainerd(24200);
    const prefix = netns!.prefix;
    const image = `localhost/strand-test/etcd:${prefix}`;
    const tar = join(c.dir, 'etcd-image.tar');
    execFileSync('bash', [join(repoRoot, 'scripts', 'image.sh'), '--etcd', '--out', tar, '--name', image], { stdio: ['ignore', 'ignore', 'pipe'] });
    c.importImage(tar);
    const certs = strandCerts(strand, c.dir);
    const spec = etcdDeployment().spec.template.spec;
    expect(spec.hostNetwork).toBe(true);
    const container = spec.containers[0];
    const data = join(c.dir, 'etcd-data');
    mkdirSync(data);
    // the Secret volume holds strand certs' server Secret; the hostPath is a temp dir
    const pod = new KubeletPod(c, `${prefix}-etcd`, spec, {
      image,
      fields: { 'status.hostIP': '127.0.0.1' },
      configMap: { name: 'none', data: {} },
      volumes: { data, tls: certs.server },
    });
    await pod.runSandbox();
    const id = await pod.start(container);
    const ready = container.readinessProbe.httpGet;
    const deadline = Date.now() + 60_000;
    while (httpGetFromNode(host, ready) !== 200) {
      const st = await c.cri().containerStatus(id);
      if (st.status.state === 'CONTAINER_EXITED' || Date.now() > deadline) throw new Error(`etcd never ready (${st.status.state})\n${pod.logs()}`);
      await new Promise((r) => setTimeout(r, 300));
    }
    const oci = JSON.parse((await c.cri().containerStatus(id, true)).info['info'] ?? '{}').runtimeSpec;
    for (const set of ['bounding', 'effective', 'permitted']) expect(oci.process.capabilities?.[set] ?? [], set).toEqual([]);
    expect(oci.process.noNewPrivileges).toBe(true);
    expect(oci.root.readonly).toBe(true);
    expect(oci.linux.seccomp?.defaultAction).toBe('SCMP_ACT_ERRNO');
    // the client port as the manifest opens it: mutual TLS, nothing else
    const port = Number(new URL(container.command.find((a: string) => a.startsWith('--listen-client-urls=')).split('=')[1]).port);
    expectPlainHttpRefused(host, port, certs.client);
    expect(readdirSync(data)).toContain('member');
    await pod.remove();
    await stopClean(c);
  });
});

describe("ctr run --cni, kept away from the host's /etc/cni, /opt/cni and /var/lib/cni", () => {
  const hostPaths = ['/etc/cni', '/opt/cni', '/var/lib/cni'];

  async function ctrRunCase(main: 'bridge' | 'strand-bridge', ipamType: 'host-local' | 'strand-ipam', streamPort: number): Promise<void> {
    if (main === 'strand-bridge') requireStrandPlugin('strand-bridge');
    if (ipamType === 'strand-ipam') requireStrandPlugin('strand-ipam');
    const before = hostPaths.map((p) => existsSync(p));
    const { c, host } = await startContainerd(streamPort);
    const prefix = netns!.prefix;
    const bin = join(c.dir, 'ctr-bin');
    mkdirSync(bin);
    for (const n of ['loopback', 'bridge', 'host-local']) copyFileSync(join(refBinDir, n), join(bin, n));
    if (main === 'strand-bridge' || ipamType === 'strand-ipam') {
      for (const n of ['strand-bridge', 'strand-ipam']) linkSync(requireStrandPlugin(n), join(bin, n));
    }
    const ipamDir = join(c.dir, 'ctr-ipam');
    const conf = join(c.dir, '10-ctr.conflist');
    writeFileSync(
      conf,
      JSON.stringify({
        cniVersion: '1.0.0',
        name: `${prefix}-ctr`,
        plugins: [{ type: main, bridge: `${prefix}-cb`, isGateway: true, ipam: { type: ipamType, dataDir: ipamDir, ranges: [[{ subnet: '10.71.0.0/24' }]] } }],
      }),
    );
    const out = c.ctrRunCni(bin, [conf], ['--rm', PAUSE, `${prefix}-ctr`, '/bin/busybox', 'ip', '-o', '-4', 'addr', 'show', 'eth0']);
    expect(out).toMatch(/inet 10\.71\.0\.\d+\/24/);
    // --rm ran CNI DEL: no veth, no address record, no container
    expect(linkNames(host).sort()).toEqual([`${prefix}-cb`, 'lo'].sort());
    expect(readdirSync(ipamDir, { recursive: true }).filter((f) => /^10\.71\./.test(String(f)))).toEqual([]);
    expect(c.ctr(['containers', 'ls', '-q']).trim()).toBe('');
    expect(hostPaths.map((p) => existsSync(p))).toEqual(before);
    await stopClean(c);
  }

  it('reference bridge + host-local: the container gets an address, --rm removes it', async () => {
    await ctrRunCase('bridge', 'host-local', 24160);
  });

  it('strand-bridge + strand-ipam: the container gets an address, --rm removes it', async () => {
    await ctrRunCase('strand-bridge', 'strand-ipam', 24170);
  });
});
