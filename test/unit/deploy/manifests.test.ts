import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Deployment, DaemonSet } from 'kubernetes-models/apps/v1';
import { ConfigMap, Namespace, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { fillTemplate, parseEndpoints } from '../../../cmd/install/template.ts';

// Every manifest validated offline against the Kubernetes schemas (kubernetes-models'
// compiled validators: types, required fields, enums, formats), plus the properties
// strand depends on, checked field by field (the schemas accept unknown fields, so a
// misspelt field would pass validation: these checks catch the ones that matter).

const dir = join(import.meta.dirname, '../../../manifests');

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

const k8sFiles = ['namespace.yaml', 'etcd.yaml', 'strand.yaml', 'etcd-tls-secret.yaml'];
const all = k8sFiles.flatMap((f) => load(f).map((obj) => ({ file: f, obj })));
const find = (kind: string, name: string) => {
  const hit = all.find((x) => x.obj.kind === kind && x.obj.metadata?.name === name);
  if (!hit) throw new Error(`no ${kind} ${name} in manifests/`);
  return hit.obj;
};

describe('manifests: Kubernetes schema validation', () => {
  it('manifests/ holds exactly the files this test knows', () => {
    expect(readdirSync(dir).sort()).toEqual([...k8sFiles, 'kind-config.yaml'].sort());
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
  const c = pod.containers[0];

  it('DaemonSet: host network, privileged, system-node-critical, tolerates every taint', () => {
    expect(pod.hostNetwork).toBe(true);
    expect(pod.priorityClassName).toBe('system-node-critical');
    expect(pod.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(c.securityContext.privileged).toBe(true);
    expect(ds.spec.template.metadata.labels).toMatchObject(ds.spec.selector.matchLabels);
    expect(pod.serviceAccountName).toBe(find('ServiceAccount', 'strand').metadata.name);
  });

  it('DaemonSet: hostPath /opt/cni/bin and /etc/cni/net.d mounted where `strand install --sleep` writes', () => {
    const hostPaths = Object.fromEntries(pod.volumes.filter((v: any) => v.hostPath).map((v: any) => [v.name, v.hostPath.path]));
    expect(hostPaths).toEqual({ 'cni-bin': '/opt/cni/bin', 'cni-conf': '/etc/cni/net.d' });
    const mounts = Object.fromEntries(c.volumeMounts.map((m: any) => [m.name, m.mountPath]));
    expect(c.command).toEqual(['/strand']);
    expect(c.args[0]).toBe('install');
    expect(c.args).toContain('--sleep');
    expect(c.args).toContain(`--bin-dir=${mounts['cni-bin']}`);
    expect(c.args).toContain(`--conf-dir=${mounts['cni-conf']}`);
    expect(c.args).toContain('--host-conf-dir=/etc/cni/net.d');
    expect(c.args).toContain(`--template=${mounts['config']}`);
    const env = Object.fromEntries(c.env.map((e: any) => [e.name, e]));
    expect(env['K8S_NODE_NAME'].valueFrom.fieldRef.fieldPath).toBe('spec.nodeName');
    expect(env['STRAND_ETCD_TLS_DIR'].value).toBe(mounts['etcd-tls']);
    const tlsVol = pod.volumes.find((v: any) => v.name === 'etcd-tls');
    expect(tlsVol.secret).toMatchObject({ secretName: find('Secret', 'strand-etcd-tls').metadata.name, optional: true });
  });

  it('DaemonSet image is the one scripts/image.sh names by default', () => {
    const script = readFileSync(join(dir, '../scripts/image.sh'), 'utf8');
    expect(script).toContain(`name=\${name:-${c.image}}`);
  });

  it('ConfigMap: the conflist template fills to strand-bridge + strand-ipam on etcd', () => {
    const cm = find('ConfigMap', 'strand-config');
    const ref = c.env.find((e: any) => e.name === 'STRAND_ETCD_ENDPOINTS').valueFrom.configMapKeyRef;
    expect(ref.name).toBe('strand-config');
    const endpoints = parseEndpoints(cm.data[ref.key]);
    const { conflist } = fillTemplate(cm.data['conflist.template'], { NODE_NAME: 'kind-worker', ETCD_ENDPOINTS: endpoints });
    const [bridge, portmap] = conflist.plugins as any[];
    expect(bridge.type).toBe('strand-bridge');
    expect(bridge.ipam).toMatchObject({ type: 'strand-ipam', nodeName: 'kind-worker', etcd: { endpoints } });
    expect(bridge.ipam.etcd).not.toHaveProperty('tls');
    expect(portmap).toEqual({ type: 'portmap', capabilities: { portMappings: true } });
    const withTls = fillTemplate(cm.data['conflist.template'], { NODE_NAME: 'n', ETCD_ENDPOINTS: endpoints, ETCD_CA: '/a', ETCD_CERT: '/b', ETCD_KEY: '/c' });
    expect((withTls.conflist.plugins[0] as any).ipam.etcd.tls).toEqual({ ca: '/a', cert: '/b', key: '/c' });
  });

  it('etcd: host network on the control-plane, its own ports, reached at the ConfigMap endpoint', () => {
    const dep = find('Deployment', 'strand-etcd');
    const svc = find('Service', 'strand-etcd');
    const p = dep.spec.template.spec;
    expect(p.hostNetwork).toBe(true);
    expect(p.nodeSelector).toEqual({ 'node-role.kubernetes.io/control-plane': '' });
    expect(p.tolerations.map((t: any) => t.key)).toContain('node-role.kubernetes.io/control-plane');
    expect(dep.spec.replicas).toBe(1);
    expect(dep.spec.strategy.type).toBe('Recreate');
    const args: string[] = p.containers[0].command;
    expect(args).toContain('--listen-client-urls=http://0.0.0.0:2479');
    expect(args.some((a) => /:(2379|2380)\b/.test(a))).toBe(false); // the cluster's own etcd ports
    expect(dep.spec.template.metadata.labels).toMatchObject(svc.spec.selector);
    const endpoint = new URL(find('ConfigMap', 'strand-config').data['etcd-endpoints']);
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

  it('the example TLS Secret has the keys the installer reads, and placeholders it rejects', () => {
    const s = find('Secret', 'strand-etcd-tls');
    expect(Object.keys(s.stringData).sort()).toEqual(['ca.crt', 'tls.crt', 'tls.key']);
    for (const v of Object.values(s.stringData)) expect(String(v)).not.toContain('-----BEGIN ');
  });
});
