import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { fillTemplate, parseEndpoints } from '../../../cmd/install/template.ts';
import { requireStrandPlugin } from '../../helpers/cnitool.ts';
import { probe, startServerWith } from '../../helpers/hostport.ts';
import { buildPauseImage, Containerd, CTR, PAUSE_IMAGE as PAUSE, startEtcdInNetns, type NetnsEtcd } from '../../helpers/containerd.ts';
import { NetnsSet } from '../../helpers/netns.ts';
import { refBinDir, repoRoot } from '../../helpers/run-plugin.ts';
import { filesMentioning, linkNames } from './fixtures.ts';

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

/** Starts containerd in a fresh host namespace with the pause image imported. */
async function startContainerd(streamPort: number): Promise<{ c: Containerd; host: string }> {
  const tar = buildPauseImage();
  netns = new NetnsSet();
  const host = netns.add('h');
  ctd = await Containerd.start({ hostNs: host, streamPort, cgroupParent: `/strand-test-${netns.prefix}` });
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

/** Stops and removes every pod, then checks sandboxes, netns and host links are gone. */
async function removePods(c: Containerd, host: string, pods: Pod[], hostLinks: string[]): Promise<void> {
  expect(linkNames(host).filter((l) => l.startsWith('veth'))).toHaveLength(pods.length);
  for (const p of pods) {
    await c.cri().stopPodSandbox(p.id);
    await c.cri().stopPodSandbox(p.id); // idempotent, as the kubelet expects
    await c.cri().removePodSandbox(p.id);
  }
  expect(await c.cri().listPodSandbox()).toEqual([]);
  for (const p of pods) expect(c.inMountNs(['sh', '-c', `test -e '${p.netns}' && echo present || echo gone`]).trim(), p.netns).toBe('gone');
  expect(c.mounts()).toEqual([]);
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
 * strand installed by `strand install` from the DaemonSet's template (here straight
 * into containerd's CNI dirs) with strand-ipam on an etcd in the host namespace; `main`
 * replaces the template's strand-bridge (the reference bridge proves strand-ipam alone).
 * The bin dir is empty before the install step, as on a node without the reference
 * plugins: every plugin the pods need comes from strand, loopback (which containerd runs
 * for every pod) and strand-portmap included; only the reference bridge is put there
 * first when the template names it (install refuses a chain it cannot run).
 */
async function strandIpamCase(main: 'strand-bridge' | 'bridge', streamPort: number): Promise<void> {
  requireStrandPlugin('strand-ipam');
  if (main === 'strand-bridge') requireStrandPlugin('strand-bridge');
  const strand = requireStrandPlugin('strand');
  const { c, host } = await startContainerd(streamPort);
  const prefix = netns!.prefix;
  etcd = await startEtcdInNetns(host, join(c.dir, 'etcd'), streamPort + 1, streamPort + 2);
  const template = join(c.dir, 'conflist.template');
  const text: string = strandManifest().configMap.data['conflist.template'];
  // no agent runs here: this file stands in for the pod MTU it writes (mtuFile)
  const mtuFile = join(c.dir, 'pod-mtu');
  writeFileSync(mtuFile, '1500\n');
  writeFileSync(template, text.replace('"type": "strand-bridge"', `"type": "${main}"`).replace('"/run/strand/pod-mtu"', JSON.stringify(mtuFile)));
  const install = () =>
    execFileSync(strand, ['install', `--bin-dir=${c.cniBinDir}`, `--conf-dir=${c.cniConfDir}`, `--template=${template}`], {
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
      'strand-macvlan',
      'strand-portmap',
    ].sort(),
  );
  expect(statSync(join(c.cniBinDir, 'loopback')).ino).toBe(statSync(join(c.cniBinDir, 'strand')).ino);
  expect(JSON.parse(readFileSync(join(c.cniConfDir, '10-strand.conflist'), 'utf8')).plugins.map((p: { type: string }) => p.type)).toEqual([
    main,
    'strand-portmap',
  ]);
  await c.waitNetworkReady();

  const ipamLs = () =>
    JSON.parse(
      execFileSync('nsenter', [`--net=/run/netns/${host}`, strand, 'ipam', '--conf', join(c.cniConfDir, '10-strand.conflist'), '--json', 'ls'], {
        encoding: 'utf8',
      }),
    ) as Array<{ containerId: string; node: string; ips: Array<{ ip: string }> }>;
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

  await removePods(c, host, pods, ['strand0', 'lo']);
  expect(ipamLs()).toEqual([]);
  const keys = etcd.etcdctl(['get', '--prefix', '/strand']);
  for (const p of pods) expect(keys).not.toContain(p.id);
  const nat = execFileSync('ip', ['netns', 'exec', host, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' });
  for (const p of pods) expect(nat).not.toContain(p.ip);
  expect(nat).not.toContain('CNI-DN-');
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
  it(`strand-bridge on a node with an empty bin dir: ${PODS} pod sandboxes get addresses (lo up by strand's loopback), reach each other; a hostPort pod is reached from the node; removal leaves no links, no IPAM records, no rules, no shims, no mounts`, async () => {
    await strandIpamCase('strand-bridge', 24130);
  });

  it(`reference bridge: install refuses the chain until the bridge is there; ${PODS} pod sandboxes get addresses, reach each other; hostPort; removal leaves nothing`, async () => {
    await strandIpamCase('bridge', 24150);
  });
});

/** A container of the DaemonSet's pod, resolved as the kubelet would on node `node`. */
interface PodContainer {
  argv: string[];
  env: string[];
  mounts: string[];
}

/**
 * Env from `value`, the downward API (`fields`: fieldPath -> value) and the ConfigMap
 * (`data`); `$(VAR)` in command/args expanded from the container's own env (the
 * kubelet's rule: an unknown name stays as written); each volume mount a bind mount of
 * `hostPath[volume]`, read-only where the manifest says so.
 */
function resolveContainer(container: any, data: Record<string, string>, fields: Record<string, string>, hostPath: Record<string, string>): PodContainer {
  const configMap = strandManifest().configMap;
  const vars: Record<string, string> = {};
  for (const e of container.env ?? []) {
    const ref = e.valueFrom?.configMapKeyRef;
    const field = e.valueFrom?.fieldRef?.fieldPath;
    let v: string | undefined;
    if (e.value !== undefined) v = e.value;
    else if (field !== undefined) v = fields[field];
    else if (ref?.name === configMap.metadata.name) v = data[ref.key];
    if (v === undefined) throw new Error(`cannot resolve env ${e.name}`);
    vars[e.name] = v;
  }
  const expand = (a: string) => a.replace(/\$\(([A-Za-z0-9_]+)\)/g, (m, n: string) => vars[n] ?? m);
  const mounts = (container.volumeMounts ?? []).flatMap((m: any) => {
    const src = hostPath[m.name];
    if (!src) throw new Error(`no host path for volume ${m.name}`);
    return ['--mount', `type=bind,src=${src},dst=${m.mountPath},options=rbind:${m.readOnly ? 'ro' : 'rw'}`];
  });
  return {
    argv: [...container.command, ...container.args].map(expand),
    env: Object.entries(vars).flatMap(([k, v]) => ['--env', `${k}=${v}`]),
    mounts,
  };
}

/** `ctr run` arguments for a container with the pod's host network and privileges. */
function ctrRunArgs(c: Containerd, name: string, image: string, pc: PodContainer): string[] {
  return [
    'run',
    '--rm',
    '--net-host',
    '--privileged',
    '--runc-root',
    join(c.dir, 'runc-ctr'),
    '--fifo-dir',
    join(c.dir, 'fifo'),
    ...pc.env,
    ...pc.mounts,
    image,
    name,
    ...pc.argv,
  ];
}

/** Builds the strand image with scripts/image.sh and imports it; returns its name. */
function importStrandImage(c: Containerd, prefix: string): string {
  const image = `localhost/strand-test/strand:${prefix}`;
  const tar = join(c.dir, 'strand-image.tar');
  execFileSync('bash', [join(repoRoot, 'scripts', 'image.sh'), '--out', tar, '--name', image], { stdio: ['ignore', 'ignore', 'pipe'] });
  c.importImage(tar);
  return image;
}

/** Host directories standing in for the node's, one per DaemonSet volume. */
function nodeDirs(c: Containerd, template: string): Record<string, string> {
  const node = join(c.dir, 'node');
  const hostPath: Record<string, string> = {
    'cni-bin': join(node, 'opt/cni/bin'),
    'cni-conf': join(node, 'etc/cni/net.d'),
    config: join(node, 'conflist.template'),
    'etcd-tls': join(node, 'etcd-tls'), // the optional Secret does not exist: empty
    'strand-run': join(node, 'run/strand'),
    'cni-log': join(node, 'var/log/strand'),
  };
  for (const d of [hostPath['cni-bin']!, hostPath['cni-conf']!, hostPath['etcd-tls']!, hostPath['strand-run']!, hostPath['cni-log']!])
    mkdirSync(d, { recursive: true });
  writeFileSync(hostPath['config']!, template);
  return hostPath;
}

describe('the installer image run in containerd', () => {
  it('the init container fills a bin dir and a conf dir exactly as the DaemonSet would, exits 0, and a re-run changes nothing', async () => {
    const strand = requireStrandPlugin('strand');
    const { c } = await startContainerd(24140);
    const prefix = netns!.prefix;
    const image = importStrandImage(c, prefix);

    const { configMap, daemonSet } = strandManifest();
    const container = daemonSet.spec.template.spec.initContainers[0];
    expect(container.name).toBe('install');
    const hostPath = nodeDirs(c, configMap.data['conflist.template']);
    // the init container's command, args, env and mounts as they are: it must end by itself
    const pc = resolveContainer(container, configMap.data, { 'spec.nodeName': 'node-img' }, hostPath);
    expect(pc.argv.slice(0, 2)).toEqual(['/strand', 'install']);
    expect(pc.argv).not.toContain('--sleep');
    // ctr run exits with the task's status: a non-zero exit throws here
    const run = () => c.ctr(ctrRunArgs(c, `${prefix}-installer`, image, pc));
    run();

    const bin = hostPath['cni-bin']!;
    // strand's names and loopback (the node's bin dir has none), and the record of them
    const names = ['loopback', 'strand', 'strand-bridge', 'strand-ipam', 'strand-ipvlan', 'strand-macvlan', 'strand-portmap'];
    expect(readdirSync(bin).sort()).toEqual(['.strand-installed.json', ...names]);
    const ino = statSync(join(bin, 'strand')).ino;
    for (const n of names) expect(statSync(join(bin, n)).ino).toBe(ino);
    expect(readFileSync(join(bin, 'strand')).equals(readFileSync(strand))).toBe(true);
    const conf = hostPath['cni-conf']!;
    expect(readdirSync(conf)).toEqual(['10-strand.conflist']);
    expect(statSync(join(conf, '10-strand.conflist')).mode & 0o777).toBe(0o644);
    const expected = fillTemplate(configMap.data['conflist.template'], {
      NODE_NAME: 'node-img',
      ETCD_ENDPOINTS: parseEndpoints(configMap.data['etcd-endpoints']),
    }).text;
    expect(readFileSync(join(conf, '10-strand.conflist'), 'utf8')).toBe(expected);
    const v = JSON.parse(execFileSync(join(bin, 'strand-bridge'), { env: { CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"1.0.0"}', encoding: 'utf8' }));
    expect(v.supportedVersions).toContain('1.1.0');

    const inodes = () => [...names, '.strand-installed.json'].map((n) => statSync(join(bin, n)).ino).concat(statSync(join(conf, '10-strand.conflist')).ino);
    const before = inodes();
    run();
    expect(inodes()).toEqual(before);
    expect(c.ctr(['containers', 'ls', '-q']).trim()).toBe('');
    await stopClean(c);
  });

  it('then the agent container: its readiness probe follows etcd, its liveness probe and metrics answer, SIGTERM ends it within the grace period and its routes stay', async () => {
    requireStrandPlugin('strand');
    const { c, host } = await startContainerd(24180);
    const prefix = netns!.prefix;
    const image = importStrandImage(c, prefix);
    const etcdDir = join(c.dir, 'etcd');
    etcd = await startEtcdInNetns(host, etcdDir, 24181, 24182);

    // the node's underlay (status.hostIP) and a peer node on it owning one block
    const ipn = (args: string[]) => execFileSync('ip', ['-n', host, ...args], { encoding: 'utf8' });
    ipn(['link', 'add', `${prefix}-up`, 'type', 'veth', 'peer', 'name', `${prefix}-uq`]);
    ipn(['addr', 'add', '192.0.2.1/24', 'dev', `${prefix}-up`]);
    for (const l of [`${prefix}-up`, `${prefix}-uq`]) ipn(['link', 'set', l, 'up']);
    const { configMap, daemonSet } = strandManifest();
    const etcdPrefix: string = JSON.parse(configMap.data['conflist.template']).plugins[0].ipam.etcd.prefix;
    etcd.etcdctl(['put', `${etcdPrefix}/nodes/peer`, JSON.stringify({ name: 'peer', addresses: ['192.0.2.2'], mode: 'host-gw' })]);
    etcd.etcdctl(['put', `${etcdPrefix}/affinity/strand/10.244.1.0-26`, JSON.stringify({ network: 'strand', cidr: '10.244.1.0/26', node: 'peer' })]);

    // the ConfigMap pointed at this etcd, as an operator would edit it
    const data = { ...configMap.data, 'etcd-endpoints': etcd.endpoint };
    const fields = { 'spec.nodeName': 'node-img', 'status.hostIP': '192.0.2.1' };
    const hostPath = nodeDirs(c, configMap.data['conflist.template']);
    const pod = daemonSet.spec.template.spec;
    c.ctr(ctrRunArgs(c, `${prefix}-install`, image, resolveContainer(pod.initContainers[0], data, fields, hostPath)));

    const spec = pod.containers[0];
    expect(spec.name).toBe('agent');
    const pc = resolveContainer(spec, data, fields, hostPath);
    expect(pc.argv).toContain('--node-ip=192.0.2.1');
    expect(pc.argv).toContain(`--mode=${configMap.data['agent-mode']}`);
    const id = `${prefix}-agent`;
    const agent = spawn(CTR, ['-a', c.socket, '-n', 'k8s.io', ...ctrRunArgs(c, id, image, pc)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let logs = '';
    for (const s of [agent.stdout, agent.stderr]) s.setEncoding('utf8').on('data', (d: string) => void (logs.length < 50_000 && (logs += d)));
    const exited = new Promise<number | null>((r) => agent.once('exit', (code) => r(code)));
    let probes = 0;
    // the probes as the kubelet runs them: an HTTP GET from the node (the host network)
    const httpGet = (p: { host: string; path: string; port: number }): { code: number; out: string } => {
      try {
        const out = execFileSync(
          'ip',
          ['netns', 'exec', host, 'curl', '-s', '--max-time', '3', '-w', '\n%{http_code}', `http://${p.host}:${p.port}${p.path}`],
          {
            encoding: 'utf8',
          },
        );
        const nl = out.lastIndexOf('\n');
        return { code: Number(out.slice(nl + 1)), out: out.slice(0, nl) };
      } catch (e) {
        return { code: -1, out: String((e as { stdout?: string }).stdout ?? e) };
      }
    };
    // the readiness probe: 200 ready, 503 not (0 for "no answer" is a failure too)
    const probe = (): { code: number; out: string } => {
      probes++;
      const r = httpGet(spec.readinessProbe.httpGet);
      return { code: r.code === 200 ? 0 : 1, out: r.out };
    };
    const waitProbe = async (want: number, what: string): Promise<string> => {
      const deadline = Date.now() + 90_000;
      for (;;) {
        const r = probe();
        if (r.code === want) return r.out;
        if (Date.now() > deadline || agent.exitCode !== null) throw new Error(`probe never ${what} (last exit ${r.code}: ${r.out})\nagent log:\n${logs}`);
        await new Promise((res) => setTimeout(res, 500));
      }
    };
    const agentRoutes = () => JSON.parse(ipn(['-j', 'route', 'show', 'proto', '115'])) as Array<{ dst: string; gateway?: string }>;
    try {
      expect(await waitProbe(0, 'ready'), logs).toBe('ok\n');
      expect(agentRoutes()).toMatchObject([{ dst: '10.244.1.0/26', gateway: '192.0.2.2' }]);
      expect(httpGet(spec.livenessProbe.httpGet)).toEqual({ code: 200, out: 'ok\n' });
      const metrics = httpGet({ ...spec.livenessProbe.httpGet, path: '/metrics' });
      expect(metrics.code).toBe(200);
      expect(metrics.out).toMatch(/^strand_agent_routes\{kind="block"\} 1$/m);
      // the pod MTU for strand-bridge, in the host directory the DaemonSet mounts
      expect(readFileSync(join(hostPath['strand-run']!, 'pod-mtu'), 'utf8')).toMatch(/^\d+\n$/);
      const pid = /^\S+\s+(\d+)/.exec(
        c
          .ctr(['task', 'ls'])
          .split('\n')
          .find((l) => l.startsWith(id)) ?? '',
      )?.[1];
      const rss = pid && existsSync(`/proc/${pid}/status`) ? /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] : undefined;
      console.log(
        `agent container: ready after ${probes} probe(s), RSS ${rss ? `${Math.round(Number(rss) / 1024)} MiB` : '?'} (request ${spec.resources.requests.memory})`,
      );

      // etcd gone: not ready (routes stay); back: ready again
      await etcd.stop();
      expect(await waitProbe(1, 'went unready with etcd down')).toMatch(/^not ready: not synced with etcd/);
      expect(httpGet(spec.livenessProbe.httpGet).code).toBe(200);
      expect(agentRoutes()).toMatchObject([{ dst: '10.244.1.0/26', gateway: '192.0.2.2' }]);
      etcd = await startEtcdInNetns(host, etcdDir, 24181, 24182);
      await waitProbe(0, 'ready again after etcd came back');

      // the kubelet stopping the pod: SIGTERM, then SIGKILL after the grace period
      const t0 = Date.now();
      c.ctr(['task', 'kill', '-s', 'SIGTERM', id]);
      const grace = pod.terminationGracePeriodSeconds * 1000;
      const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('timeout'), grace))]);
      const ms = Date.now() - t0;
      expect(code, `agent still running ${grace} ms after SIGTERM\n${logs}`).toBe(0);
      console.log(`agent container: exited ${ms} ms after SIGTERM`);
      expect(logs).toMatch(/SIGTERM: stopping \(routes stay in place\)/);
      expect(agentRoutes()).toMatchObject([{ dst: '10.244.1.0/26', gateway: '192.0.2.2' }]);
      // the node record stays (no lease): peers keep their routes to this node's blocks
      expect(etcd.etcdctl(['get', `${etcdPrefix}/nodes/node-img`, '--print-value-only'])).toContain('"192.0.2.1"');
    } finally {
      if (agent.exitCode === null) {
        try {
          c.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
        } catch {
          // already gone
        }
        await exited;
      }
    }
    expect(c.ctr(['containers', 'ls', '-q']).trim()).toBe('');
    await etcd.stop();
    etcd = undefined;
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
