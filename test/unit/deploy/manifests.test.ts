import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Deployment, DaemonSet } from 'kubernetes-models/apps/v1';
import { ConfigMap, Namespace, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { FLAGS, loadAgentConfig } from '../../../agent/config.ts';
import { CLIENT_SECRET, makeCerts, SERVER_SECRET } from '../../../cmd/certs.ts';
import { DEFAULT_LOG_FILE } from '../../../lib/cni/log.ts';
import { main as installMain, pluginTypes } from '../../../cmd/install.ts';
import { BINARY_NAMES } from '../../../cmd/install/files.ts';
import { fillTemplate, parseEndpoints } from '../../../cmd/install/template.ts';

// Every manifest validated offline against the Kubernetes schemas (kubernetes-models'
// compiled validators: types, required fields, enums, formats), plus the properties
// strand depends on, checked field by field (the schemas accept unknown fields, so a
// misspelt field would pass validation: these checks catch the ones that matter).

const dir = join(import.meta.dirname, '../../../manifests');
const repo = join(dir, '..');
const pkgVersion: string = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).version;

const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/DaemonSet': DaemonSet,
  'apps/v1/Deployment': Deployment,
};

function load(file: string): any[] {
  const docs = parseAllDocuments(readFileSync(join(dir, file), 'utf8'));
  for (const d of docs) if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]?.message}`);
  return docs.map((d) => d.toJS()).filter((x) => x !== null);
}

const k8sFiles = ['namespace.yaml', 'etcd.yaml', 'strand.yaml'];
// the Secrets come from `strand certs` (secrets.yaml), made here with its defaults
const certsDir = join(mkdtempSync(join(tmpdir(), 'strand-manifests-certs-')), 'certs');
makeCerts({
  dir: certsDir,
  namespace: 'strand-system',
  service: 'strand-etcd',
  serviceIP: '10.96.0.50',
  clusterDomain: 'cluster.local',
  extraSans: [],
  days: 1,
  caDays: 2,
});
const secretDocs = parseAllDocuments(readFileSync(join(certsDir, 'secrets.yaml'), 'utf8')).map((d) => d.toJS());
rmSync(join(certsDir, '..'), { recursive: true, force: true });
const all = [...k8sFiles.flatMap((f) => load(f).map((obj) => ({ file: f, obj }))), ...secretDocs.map((obj) => ({ file: 'strand certs: secrets.yaml', obj }))];
const find = (kind: string, name: string) => {
  const hit = all.find((x) => x.obj.kind === kind && x.obj.metadata?.name === name);
  if (!hit) throw new Error(`no ${kind} ${name} in manifests/`);
  return hit.obj;
};

describe('manifests: Kubernetes schema validation', () => {
  it('manifests/ holds exactly the files this test knows', () => {
    expect(readdirSync(dir).sort()).toEqual([...k8sFiles, 'kind-config.yaml'].sort());
    expect(secretDocs.map((d) => d.metadata.name)).toEqual([SERVER_SECRET, CLIENT_SECRET]);
  });

  for (const { file, obj } of all) {
    it(`${file}: ${obj.kind} ${obj.metadata?.name} validates`, () => {
      const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
      expect(Model, `no model for ${obj.apiVersion} ${obj.kind}`).toBeDefined();
      expect(() => new Model!(obj).validate()).not.toThrow();
      if (obj.kind !== 'Namespace') expect(obj.metadata.namespace).toBe('strand-system');
    });
  }

  it('the validators do reject a broken object (the check can fail)', () => {
    const ds = structuredClone(find('DaemonSet', 'strand'));
    ds.spec.template.spec.hostNetwork = 'yes';
    expect(() => new DaemonSet(ds).validate()).toThrow(/hostNetwork/);
    delete ds.spec.selector;
    expect(() => new DaemonSet(ds).validate()).toThrow(/selector/);
  });
});

describe('manifests: what strand relies on', () => {
  const ds = find('DaemonSet', 'strand');
  const pod = ds.spec.template.spec;
  const cm = find('ConfigMap', 'strand-config');
  // the installer runs to completion first, then the agent runs for the pod's lifetime
  const inst = pod.initContainers[0];
  const daemon = pod.containers.find((c: any) => c.name === 'daemon');
  const agent = pod.containers.find((c: any) => c.name === 'agent');
  const mountsOf = (c: any): Record<string, any> => Object.fromEntries(c.volumeMounts.map((m: any) => [m.name, m]));
  const envOf = (c: any): Record<string, any> => Object.fromEntries(c.env.map((e: any) => [e.name, e]));
  const flag = (c: any, name: string): string | undefined => {
    const a = (c.args as string[]).find((x) => x.startsWith(`--${name}=`));
    return a?.slice(name.length + 3);
  };

  it("DaemonSet: host network, Linux nodes only, seccomp RuntimeDefault, system-node-critical, tolerates every taint, grace period above the daemon's", () => {
    expect(pod.hostNetwork).toBe(true);
    expect(pod.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' });
    expect(pod.securityContext.seccompProfile).toEqual({ type: 'RuntimeDefault' });
    expect(pod.priorityClassName).toBe('system-node-critical');
    expect(pod.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(pod.terminationGracePeriodSeconds).toBe(30);
    expect(pod.initContainers.map((c: any) => c.name)).toEqual(['install']);
    expect(pod.containers.map((c: any) => c.name)).toEqual(['daemon', 'agent']);
    // the installer only writes the host directories it mounts: root without capabilities
    expect(inst.securityContext).toEqual({
      runAsUser: 0,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    for (const c of [...pod.initContainers, ...pod.containers]) expect(c.securityContext.seccompProfile, c.name).toBeUndefined(); // the pod's applies
    // the agent: routes, VXLAN, neighbours and proxy ARP through rtnetlink, nothing more
    expect(agent.securityContext).toEqual({ allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] } });
    // the daemon alone is privileged: it does what the plugins do as root on the node
    // (netlink and sysctls in every pod's namespace, /proc/sys writable) and enters the
    // runtime's mount namespace for the node's iptables/nft and delegates (docs/daemon.md)
    expect(daemon.securityContext).toEqual({ privileged: true });
    for (const c of [...pod.initContainers, ...pod.containers].filter((x: any) => x !== daemon)) expect(c.securityContext.privileged, c.name).toBeUndefined();
    expect(ds.spec.template.metadata.labels).toMatchObject(ds.spec.selector.matchLabels);
    expect(pod.serviceAccountName).toBe(find('ServiceAccount', 'strand').metadata.name);
  });

  it('init container: `strand install` without --sleep, hostPath /opt/cni/bin and /etc/cni/net.d mounted where it writes', () => {
    const hostPaths = Object.fromEntries(pod.volumes.filter((v: any) => v.hostPath).map((v: any) => [v.name, v.hostPath.path]));
    expect(hostPaths).toEqual({
      'cni-bin': '/opt/cni/bin',
      'cni-conf': '/etc/cni/net.d',
      'strand-run': '/run/strand',
      'cni-log': '/var/log/strand',
      'cni-ipam': '/var/lib/cni/networks',
    });
    // the plugins' default log directory exists on the node once the pod starts
    expect(pod.volumes.find((v: any) => v.name === 'cni-log').hostPath).toEqual({ path: dirname(DEFAULT_LOG_FILE), type: 'DirectoryOrCreate' });
    const mounts = Object.fromEntries(inst.volumeMounts.map((m: any) => [m.name, m.mountPath]));
    expect(inst.command).toEqual(['/strand']);
    expect(inst.args[0]).toBe('install');
    // an init container must exit: --sleep would keep the agent from ever starting
    expect(inst.args).not.toContain('--sleep');
    expect(inst.args.some((a: string) => a.startsWith('--sleep'))).toBe(false);
    expect(inst.args).toContain(`--bin-dir=${mounts['cni-bin']}`);
    expect(inst.args).toContain(`--conf-dir=${mounts['cni-conf']}`);
    expect(inst.args).toContain(`--host-conf-dir=${hostPaths['cni-conf']}`);
    expect(inst.args).toContain(`--template=${mounts['config']}`);
    const env = envOf(inst);
    expect(env['K8S_NODE_NAME'].valueFrom.fieldRef.fieldPath).toBe('spec.nodeName');
    expect(env['STRAND_ETCD_TLS_DIR'].value).toBe(mounts['etcd-tls']);
    const tlsVol = pod.volumes.find((v: any) => v.name === 'etcd-tls');
    expect(tlsVol.secret).toMatchObject({ secretName: find('Secret', CLIENT_SECRET).metadata.name, optional: true });
  });

  it('agent container: `strand agent` on the conflist the installer wrote, conf dir read-only at its host path, /run/strand shared, probes on the metrics listener', () => {
    expect(agent.image).toBe(inst.image);
    expect(agent.command).toEqual(['/strand']);
    expect(agent.args[0]).toBe('agent');
    // every option is one `strand agent` accepts (agent/config.ts), in --name=value form
    for (const a of agent.args.slice(1) as string[]) {
      const m = /^--([a-z-]+)=(.+)$/.exec(a);
      expect(m, a).not.toBeNull();
      expect(Object.keys(FLAGS), a).toContain(m![1]);
    }
    // mounted where the installer's --host-conf-dir says, so the TLS paths in the
    // conflist are valid for the agent too; the agent only reads it
    const mounts = mountsOf(agent);
    expect(Object.keys(mounts)).toEqual(['cni-conf', 'strand-run', 'cni-ipam']);
    expect(mounts['cni-conf']).toMatchObject({ mountPath: flag(inst, 'host-conf-dir'), readOnly: true });
    // the pod MTU file: where the agent writes it (default) is where strand-bridge reads it
    const runDir = pod.volumes.find((v: any) => v.name === 'strand-run').hostPath.path;
    expect(mounts['strand-run'].mountPath).toBe(runDir);
    expect(mounts['strand-run'].readOnly).toBeUndefined();
    const cfgOf = loadAgentConfig(new Map([['etcd-endpoints', 'http://127.0.0.1:2379']]), {});
    expect(JSON.parse(cm.data['conflist.template']).plugins[0].mtuFile).toBe(cfgOf.podMtuFile);
    expect(cfgOf.podMtuFile.startsWith(`${runDir}/`)).toBe(true);
    // strand-ipam's node-local directory (its journal of pending releases) where the
    // plugins keep it (the conflist sets no dataDir) and the agent looks (its default)
    const ipamDir = pod.volumes.find((v: any) => v.name === 'cni-ipam').hostPath.path;
    expect(JSON.parse(cm.data['conflist.template']).plugins[0].ipam.dataDir).toBeUndefined();
    expect(mounts['cni-ipam'].mountPath).toBe(ipamDir);
    expect(cfgOf.ipamDataDir).toBe(ipamDir);
    expect(flag(agent, 'cni-conf')).toBe(`${mounts['cni-conf'].mountPath}/${flag(inst, 'conf-name') ?? '10-strand.conflist'}`);
    const env = envOf(agent);
    expect(env['K8S_NODE_NAME'].valueFrom.fieldRef.fieldPath).toBe('spec.nodeName');
    expect(env['NODE_IP'].valueFrom.fieldRef.fieldPath).toBe('status.hostIP');
    expect(flag(agent, 'node-ip')).toBe('$(NODE_IP)');
    // $(VAR) in args is expanded by the kubelet only for variables the container defines
    for (const a of agent.args as string[]) for (const m of a.matchAll(/\$\(([A-Za-z0-9_]+)\)/g)) expect(Object.keys(env), a).toContain(m[1]);
    // the probes ask the agent's default listener (loopback: the kubelet runs on the node)
    expect(agent.args.some((a: string) => a.startsWith('--metrics-address') || a.startsWith('--config') || a.startsWith('--pod-mtu-file'))).toBe(false);
    const listen = cfgOf.metricsAddress;
    expect(agent.ports).toEqual([{ name: 'metrics', containerPort: listen.port, protocol: 'TCP' }]);
    expect(agent.livenessProbe.httpGet).toEqual({ host: listen.host, path: '/healthz', port: listen.port });
    expect(agent.readinessProbe.httpGet).toEqual({ host: listen.host, path: '/readyz', port: listen.port });
    expect(agent.readinessProbe.periodSeconds).toBe(5);
    expect(agent.readinessProbe.failureThreshold).toBe(2);
    expect(agent.livenessProbe.failureThreshold * agent.livenessProbe.periodSeconds).toBeGreaterThanOrEqual(30);
  });

  it("daemon container: `strand daemon` on the default socket, every path a plugin reads mounted where the node has it, grace below the pod's, readiness = `strand daemon status`", async () => {
    const { DEFAULT_SOCKET, parseDaemonOptions } = await import('../../../daemon/main.ts');
    expect(daemon.image).toBe(inst.image);
    expect(daemon.command).toEqual(['/strand']);
    expect(daemon.args[0]).toBe('daemon');
    const o = parseDaemonOptions(daemon.args.slice(1), {});
    expect(o.socket).toBe(DEFAULT_SOCKET);
    expect(o.graceMs / 1000).toBeLessThan(pod.terminationGracePeriodSeconds);
    const hostPathOf = (vol: string): string => pod.volumes.find((v: any) => v.name === vol).hostPath.path;
    const mounts = mountsOf(daemon);
    // the socket's directory, CNI_PATH, the conflist's TLS files and the local IPAM store
    // are at the node's paths: the daemon and the standalone fallback see the same files
    for (const vol of ['strand-run', 'cni-bin', 'cni-conf', 'cni-ipam', 'cni-log']) expect(mounts[vol]?.mountPath, vol).toBe(hostPathOf(vol));
    expect(hostPathOf('strand-run')).toBe(DEFAULT_SOCKET.slice(0, DEFAULT_SOCKET.lastIndexOf('/')));
    expect(mounts['cni-bin'].readOnly).toBe(true);
    expect(daemon.readinessProbe.exec.command).toEqual(['/strand', 'daemon', 'status']);
    // liveness on the daemon's own listener (its default address), not the agent's
    expect(o.metricsAddress).toEqual({ host: '127.0.0.1', port: 9477 });
    expect(daemon.livenessProbe.httpGet).toEqual({ host: '127.0.0.1', path: '/healthz', port: o.metricsAddress?.port });
    expect(daemon.ports.map((p: any) => p.containerPort)).toEqual([9477]);
    expect(agent.ports.map((p: any) => p.containerPort)).not.toContain(9477);
  });

  it('every configMapKeyRef names the strand ConfigMap and a key it has; agent-mode is a mode the agent knows', () => {
    const refs = [...pod.initContainers, ...pod.containers].flatMap((c: any) => (c.env ?? []).map((e: any) => e.valueFrom?.configMapKeyRef).filter(Boolean));
    expect(refs.map((r: any) => r.key).sort()).toEqual(['agent-mode', 'etcd-endpoints']);
    for (const r of refs) {
      expect(r.name).toBe(cm.metadata.name);
      expect(Object.keys(cm.data)).toContain(r.key);
    }
    expect(envOf(agent)['STRAND_AGENT_MODE'].valueFrom.configMapKeyRef.key).toBe('agent-mode');
    expect(flag(agent, 'mode')).toBe('$(STRAND_AGENT_MODE)');
    expect(cm.data['agent-mode']).toBe('host-gw'); // kind's nodes share one L2 segment
    const ref = pod.volumes.find((v: any) => v.name === 'config').configMap;
    expect(ref.name).toBe(cm.metadata.name);
  });

  it('the agent takes etcd endpoints, prefix and TLS files from the conflist `strand install` writes from the ConfigMap', async () => {
    // the installer itself (cmd/install.ts), with the pod's env and args pointed at a temp
    // dir standing in for the node's /etc/cni/net.d (as both containers see it)
    const tmp = mkdtempSync(join(tmpdir(), 'strand-manifests-'));
    try {
      const conf = join(tmp, 'net.d');
      const tlsDir = join(tmp, 'etcd-tls');
      mkdirSync(tlsDir);
      for (const f of ['ca.crt', 'tls.crt', 'tls.key']) writeFileSync(join(tlsDir, f), `-----BEGIN ${f}-----\nAA==\n-----END ${f}-----\n`);
      writeFileSync(join(tmp, 'template'), cm.data['conflist.template']);
      writeFileSync(join(tmp, 'strand'), 'not really strand');
      const remap: Record<string, string> = {
        'bin-dir': join(tmp, 'bin'),
        'conf-dir': conf,
        'host-conf-dir': conf,
        template: join(tmp, 'template'),
      };
      const args = (inst.args as string[]).slice(1).map((a) => {
        const name = /^--([a-z-]+)=/.exec(a)?.[1];
        return name && remap[name] ? `--${name}=${remap[name]}` : a;
      });
      let err = '';
      const io = {
        env: { K8S_NODE_NAME: 'kind-worker', STRAND_ETCD_ENDPOINTS: cm.data['etcd-endpoints'], STRAND_ETCD_TLS_DIR: tlsDir },
        stdin: async () => Buffer.alloc(0),
        stdout: { write: () => {} },
        stderr: {
          write: (s: string) => {
            err += s;
          },
        },
      };
      expect(await installMain([...args, `--source=${join(tmp, 'strand')}`], io), err).toBe(0);

      const agentEnv: Record<string, string> = { K8S_NODE_NAME: 'kind-worker', NODE_IP: '172.18.0.3', STRAND_AGENT_MODE: cm.data['agent-mode'] };
      const flags = new Map<string, string>();
      for (const a of (agent.args as string[]).slice(1)) {
        const [, name, value] = /^--([a-z-]+)=(.*)$/.exec(a)!;
        flags.set(
          name!,
          value!.replace(/\$\(([A-Za-z0-9_]+)\)/g, (_m, v: string) => agentEnv[v] ?? `$(${v})`),
        );
      }
      expect(flags.get('cni-conf')).toBe('/etc/cni/net.d/10-strand.conflist');
      flags.set('cni-conf', join(conf, '10-strand.conflist'));
      const cfg = loadAgentConfig(flags, agentEnv);
      expect(cfg).toMatchObject({ nodeName: 'kind-worker', nodeIPs: ['172.18.0.3'], mode: 'host-gw', networks: ['strand'] });
      const tpl = JSON.parse(cm.data['conflist.template']);
      expect(cfg.etcd.endpoints).toEqual(parseEndpoints(cm.data['etcd-endpoints']));
      expect(cfg.etcd.prefix).toBe(tpl.plugins[0].ipam.etcd.prefix);
      // the TLS files the installer copied, read through the paths it wrote
      expect(cfg.etcd.tls?.ca?.toString()).toBe(readFileSync(join(tlsDir, 'ca.crt'), 'utf8'));
      expect(cfg.etcd.tls?.cert?.toString()).toBe(readFileSync(join(tlsDir, 'tls.crt'), 'utf8'));
      expect(cfg.etcd.tls?.key?.toString()).toBe(readFileSync(join(tlsDir, 'tls.key'), 'utf8'));
      const written = JSON.parse(readFileSync(join(conf, '10-strand.conflist'), 'utf8'));
      expect(written.plugins[0].ipam.etcd.tls.ca).toBe(join(conf, 'strand-etcd', 'ca.crt'));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("DaemonSet image: package.json's version, the name scripts/image.sh gives by default", () => {
    expect(inst.image).toBe(`docker.io/library/strand:${pkgVersion}`);
    const script = readFileSync(join(repo, 'scripts/image.sh'), 'utf8');
    expect(script).toContain('name=${name:-docker.io/library/strand:$version}');
  });

  it('the Dockerfile builds from source (a stage running scripts/build.sh) and ships /strand and /strand-lib', () => {
    const df = readFileSync(join(repo, 'Dockerfile'), 'utf8');
    expect(df).toMatch(/^FROM debian:12 AS build$/m);
    expect(df).toMatch(/^RUN npm ci /m);
    expect(df).toMatch(/bash scripts\/build\.sh/);
    expect(df).toContain('COPY --from=build /src/dist/strand /strand');
    expect(df).toContain('COPY --from=build /src/dist/strand-lib /strand-lib');
    expect(df).not.toMatch(/^COPY dist\//m);
    expect(readFileSync(join(repo, '.dockerignore'), 'utf8')).toMatch(/^node_modules$/m);
  });

  it('LICENSE (Apache-2.0, as package.json says) and a CHANGELOG with this version', () => {
    expect(JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).license).toBe('Apache-2.0');
    expect(readFileSync(join(repo, 'LICENSE'), 'utf8')).toMatch(/Apache License\s+Version 2\.0, January 2004/);
    expect(readFileSync(join(repo, 'CHANGELOG.md'), 'utf8')).toContain(`## ${pkgVersion}`);
  });

  it('every cluster address written in the manifests has a comment above naming it or saying where to change it', () => {
    for (const f of [...k8sFiles, 'kind-config.yaml']) {
      const lines = readFileSync(join(dir, f), 'utf8').split('\n');
      lines.forEach((l, i) => {
        const addr = /\b(?:10|172|192)\.\d+\.\d+\.\d+(?:\/\d+)?/.exec(l)?.[0];
        if (l.trimStart().startsWith('#') || addr === undefined) return;
        // (a conflist inside a ConfigMap is JSON: its comment stands above the key)
        const above = lines.slice(Math.max(0, i - 25), i).filter((x) => x.trimStart().startsWith('#'));
        expect(
          above.some((x) => x.includes(addr) || /\bchange\b/.test(x)),
          `${f}:${i + 1}: ${l.trim()}`,
        ).toBe(true);
      });
    }
  });

  it('ConfigMap: the conflist template fills to strand-bridge + strand-ipam on etcd, then strand-portmap with the portMappings capability', () => {
    const ref = inst.env.find((e: any) => e.name === 'STRAND_ETCD_ENDPOINTS').valueFrom.configMapKeyRef;
    expect(ref.name).toBe('strand-config');
    const endpoints = parseEndpoints(cm.data[ref.key]);
    const { conflist } = fillTemplate(cm.data['conflist.template'], { NODE_NAME: 'kind-worker', ETCD_ENDPOINTS: endpoints });
    const [bridge, portmap] = conflist.plugins as any[];
    expect(bridge.type).toBe('strand-bridge');
    expect(bridge.ipam).toMatchObject({ type: 'strand-ipam', nodeName: 'kind-worker', etcd: { endpoints } });
    expect(bridge.ipam.etcd).not.toHaveProperty('tls');
    expect(portmap).toEqual({ type: 'strand-portmap', capabilities: { portMappings: true } });
    // every plugin of the chain is one `strand install` lays down: a node needs nothing else
    expect(pluginTypes(conflist).map((p) => p.type)).toEqual(['strand-bridge', 'strand-ipam', 'strand-portmap']);
    for (const p of pluginTypes(conflist)) expect(BINARY_NAMES as readonly string[]).toContain(p.type);
    const withTls = fillTemplate(cm.data['conflist.template'], { NODE_NAME: 'n', ETCD_ENDPOINTS: endpoints, ETCD_CA: '/a', ETCD_CERT: '/b', ETCD_KEY: '/c' });
    expect((withTls.conflist.plugins[0] as any).ipam.etcd.tls).toEqual({ ca: '/a', cert: '/b', key: '/c' });
  });

  it('etcd: host network on the control-plane, its own ports, reached at the ConfigMap endpoint', () => {
    const dep = find('Deployment', 'strand-etcd');
    const svc = find('Service', 'strand-etcd');
    const p = dep.spec.template.spec;
    expect(p.hostNetwork).toBe(true);
    expect(p.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux', 'node-role.kubernetes.io/control-plane': '' });
    expect(p.tolerations.map((t: any) => t.key)).toContain('node-role.kubernetes.io/control-plane');
    expect(dep.spec.replicas).toBe(1);
    expect(dep.spec.strategy.type).toBe('Recreate');
    const args: string[] = p.containers[0].command;
    expect(args).toContain('--listen-client-urls=https://0.0.0.0:2479');
    expect(args.some((a) => /:(2379|2380)\b/.test(a))).toBe(false); // the cluster's own etcd ports
    expect(dep.spec.template.metadata.labels).toMatchObject(svc.spec.selector);
    const endpoint = new URL(find('ConfigMap', 'strand-config').data['etcd-endpoints']);
    expect(endpoint.protocol).toBe('https:');
    expect(endpoint.hostname).toBe(svc.spec.clusterIP);
    expect(Number(endpoint.port)).toBe(svc.spec.ports[0].port);
  });

  it('kind-config: no default CNI; pod subnet = IPAM range; etcd ClusterIP inside the service subnet', () => {
    const [kind] = load('kind-config.yaml');
    expect(kind).toMatchObject({ kind: 'Cluster', apiVersion: 'kind.x-k8s.io/v1alpha4' });
    expect(kind.networking.disableDefaultCNI).toBe(true);
    expect(kind.nodes.map((n: any) => n.role)).toContain('control-plane');
    for (const n of kind.nodes) expect(['control-plane', 'worker']).toContain(n.role);
    expect(Object.keys(kind.networking).sort()).toEqual(['disableDefaultCNI', 'podSubnet', 'serviceSubnet']);
    const tpl = JSON.parse(find('ConfigMap', 'strand-config').data['conflist.template']);
    expect(tpl.plugins[0].ipam.ranges).toEqual([[{ subnet: kind.networking.podSubnet }]]);
    const [net, bits] = kind.networking.serviceSubnet.split('/');
    const toInt = (a: string) => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
    const mask = 2 ** 32 - 2 ** (32 - Number(bits));
    const ip = find('Service', 'strand-etcd').spec.clusterIP;
    expect((toInt(ip) & mask) >>> 0).toBe(toInt(net));
  });

  it('etcd: mutual TLS only (no plain-HTTP client URL), files from the Secret strand certs writes, no capabilities', () => {
    const p = find('Deployment', 'strand-etcd').spec.template.spec;
    const c = p.containers[0];
    const args: string[] = c.command;
    const flagValue = (n: string) => args.find((a) => a.startsWith(`--${n}=`))?.slice(n.length + 3);
    for (const n of ['listen-client-urls', 'advertise-client-urls']) for (const u of flagValue(n)!.split(',')) expect(u, n).toMatch(/^https:\/\//);
    expect(args).toContain('--client-cert-auth');
    // peer and metrics URLs stay plain HTTP, on loopback only
    for (const n of ['listen-peer-urls', 'initial-advertise-peer-urls', 'listen-metrics-urls']) expect(flagValue(n), n).toMatch(/^http:\/\/127\.0\.0\.1:/);
    const mount = c.volumeMounts.find((m: any) => m.name === 'tls');
    expect(mount.readOnly).toBe(true);
    const vol = p.volumes.find((v: any) => v.name === 'tls');
    expect(vol.secret.secretName).toBe(SERVER_SECRET);
    expect(vol.secret.optional).toBeUndefined();
    const secret = find('Secret', SERVER_SECRET);
    for (const [flag, key] of [
      ['cert-file', 'tls.crt'],
      ['key-file', 'tls.key'],
      ['trusted-ca-file', 'ca.crt'],
    ]) {
      expect(flagValue(flag!)).toBe(`${mount.mountPath}/${key}`);
      expect(secret.stringData[key!]).toMatch(/^-----BEGIN /);
    }
    expect(p.nodeSelector['kubernetes.io/os']).toBe('linux');
    expect(p.securityContext.seccompProfile).toEqual({ type: 'RuntimeDefault' });
    expect(c.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
  });

  it("strand certs' server certificate names the Service's ClusterIP and DNS names (its defaults match the manifests)", () => {
    const svc = find('Service', 'strand-etcd');
    const cert = new X509Certificate(find('Secret', SERVER_SECRET).stringData['tls.crt']);
    expect(cert.checkIP(svc.spec.clusterIP)).toBe(svc.spec.clusterIP);
    const name = `${svc.metadata.name}.${svc.metadata.namespace}`;
    for (const h of [svc.metadata.name, name, `${name}.svc`, `${name}.svc.cluster.local`]) expect(cert.checkHost(h), h).toBe(h);
    const client = find('Secret', CLIENT_SECRET);
    expect(new X509Certificate(client.stringData['tls.crt']).checkIssued(new X509Certificate(client.stringData['ca.crt']))).toBe(true);
  });
});
