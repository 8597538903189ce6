// `strand ipam` admin CLI against both stores: ls (with pod identity, --namespace,
// --node), show, usage, release and gc (with --dry-run), --json; and the papercuts: --help,
// `strand --version`, a data dir that does not exist, the default etcd prefix of the CLI
// and the manifests, the agent's --etcd-password warning.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEtcd, type EtcdCluster } from '../../helpers/etcd.ts';
import { binDir, repoRoot } from '../../helpers/run-plugin.ts';
import { DEFAULT_ETCD_PREFIX } from '../../../ipam/store/etcd-config.ts';
import { addrOf, cli as run, etcdSection, netConf, plugin, requireBuilt } from './helpers.ts';

const STRAND = join(binDir, 'strand');

describe('strand ipam CLI', () => {
  let etcd: EtcdCluster;
  let dir: string;
  beforeAll(async () => {
    requireBuilt();
    etcd = await startEtcd();
    dir = mkdtempSync(join(tmpdir(), 's4-ipam-cli-'));
  });
  afterAll(async () => {
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const kind of ['local', 'etcd'] as const) {
    it(`ls / show / usage / release / gc on the ${kind} store`, async () => {
      const ipam =
        kind === 'etcd' ? { ranges: [[{ subnet: '10.70.0.0/24' }]], etcd: etcdSection(etcd) } : { ranges: [[{ subnet: '10.70.0.0/24' }]], dataDir: dir };
      const conf = netConf('net-cli', ipam);
      const confFile = join(dir, `${kind}.conf`);
      writeFileSync(confFile, JSON.stringify(conf));
      const a = addrOf(await plugin({ command: 'ADD', containerId: 'ca', node: 'node-a' }, conf));
      const b = addrOf(await plugin({ command: 'ADD', containerId: 'cb', node: 'node-b' }, conf));
      const storeFlags = kind === 'etcd' ? ['--etcd-endpoints', etcd.endpoints.join(','), '--etcd-prefix', '/s4test'] : ['--data-dir', dir];

      const ls = await run([...storeFlags, 'ls', '--json']);
      expect(ls.code, ls.err).toBe(0);
      expect(JSON.parse(ls.out).map((x: { containerId: string }) => x.containerId)).toEqual(['ca', 'cb']);
      const table = await run([...storeFlags, 'ls']);
      expect(table.out).toMatch(/^NETWORK\s+CONTAINER\s+IFNAME\s+NODE\s+IPS/);

      const show = await run([...storeFlags, 'show', b, '--json']);
      expect(JSON.parse(show.out)[0]).toMatchObject({ ip: b, allocated: true, containerId: 'cb', node: 'node-b' });
      expect((await run([...storeFlags, 'show', '10.70.0.250'])).code).toBe(1);

      const usage = await run(['--conf', confFile, 'usage', '--json']);
      expect(usage.code, usage.err).toBe(0);
      const u = JSON.parse(usage.out);
      // etcd: two /26 blocks (.2-.63 and .64-.127 usable); local: the whole /24 is one block
      expect(u.pools).toEqual([{ key: 'net-cli IPv4', blocks: kind === 'etcd' ? 2 : 1, used: 2, capacity: kind === 'etcd' ? 126 : 253 }]);
      expect(u.nodes.map((n: { key: string }) => n.key)).toEqual(kind === 'etcd' ? ['net-cli node-a', 'net-cli node-b'] : ['net-cli node-a']);

      const rel = await run([...storeFlags, 'release', a, '--json']);
      expect(JSON.parse(rel.out)).toEqual([{ network: 'net-cli', containerId: 'ca', ifname: 'eth0', ips: [a] }]);
      const relId = await run([...storeFlags, 'release', 'cb']);
      expect(relId.code).toBe(0);
      expect((await run([...storeFlags, 'release', 'cb'])).code).toBe(1);
      const gc = await run([...storeFlags, 'gc', '--json']);
      expect(JSON.parse(gc.out)).toEqual([
        { network: 'net-cli', orphans: [], restored: [], blocksCreated: [], attachmentsFixed: [], conflicts: [], notes: [], released: [], kept: [] },
      ]);
      expect(JSON.parse((await run([...storeFlags, 'ls', '--json'])).out)).toEqual([]);
    });
  }

  for (const kind of ['local', 'etcd'] as const) {
    it(`${kind}: pod identity on records; ls --namespace/--node; show prints the pod; release and gc --dry-run change nothing`, async () => {
      const ipam =
        kind === 'etcd'
          ? { ranges: [[{ subnet: '10.71.0.0/24' }]], etcd: etcdSection(etcd, { prefix: '/cli-pods' }) }
          : { ranges: [[{ subnet: '10.71.0.0/24' }]], dataDir: dir };
      const conf = netConf('net-pods', ipam);
      const storeFlags = kind === 'etcd' ? ['--etcd-endpoints', etcd.endpoints.join(','), '--etcd-prefix', '/cli-pods'] : ['--data-dir', dir];
      const pod = (ns: string, name: string): string =>
        `IgnoreUnknown=1;K8S_POD_NAMESPACE=${ns};K8S_POD_NAME=${name};K8S_POD_INFRA_CONTAINER_ID=x;K8S_POD_UID=uid-${name}`;
      const add = async (id: string, node: string, args: string): Promise<string> =>
        addrOf(await plugin({ command: 'ADD', containerId: id, node }, conf, { CNI_ARGS: args, CNI_NETNS: `/var/run/netns/${id}` }));
      const ipWeb = await add('c-web', 'node-a', pod('shop', 'web-1'));
      await add('c-db', 'node-b', pod('shop', 'db-0'));
      await add('c-dns', 'node-a', pod('kube-system', 'coredns-7'));
      await add('c-bare', 'node-b', '');
      const ls = JSON.parse((await run([...storeFlags, '--network', 'net-pods', 'ls', '--json'])).out);
      expect(ls.find((a: { containerId: string }) => a.containerId === 'c-web')).toMatchObject({
        pod: { namespace: 'shop', name: 'web-1', uid: 'uid-web-1' },
        netns: '/var/run/netns/c-web',
        node: 'node-a',
      });
      expect(ls.find((a: { containerId: string }) => a.containerId === 'c-bare').pod).toBeUndefined();
      const ids = async (...flags: string[]): Promise<string[]> =>
        JSON.parse((await run([...storeFlags, '--network', 'net-pods', 'ls', '--json', ...flags])).out).map((a: { containerId: string }) => a.containerId);
      expect(await ids('--namespace', 'shop')).toEqual(['c-db', 'c-web']);
      expect(await ids('--node', 'node-a')).toEqual(['c-dns', 'c-web']);
      expect(await ids('--namespace', 'shop', '--node', 'node-b')).toEqual(['c-db']);
      const table = await run([...storeFlags, '--network', 'net-pods', 'ls']);
      expect(table.out).toMatch(/^NETWORK\s+CONTAINER\s+IFNAME\s+NODE\s+IPS\s+NAMESPACE\s+POD\s+CREATED\s+STATE\n/);
      expect(table.out).toMatch(/c-web\s+eth0\s+node-a\s+10\.71\.0\.\d+\s+shop\s+web-1/);
      const show = await run([...storeFlags, 'show', ipWeb]);
      expect(show.code).toBe(0);
      expect(show.out).toMatch(/allocated\s+c-web\/eth0\s+node-a\s+shop\/web-1 \(uid-web-1\)/);

      const dry = await run([...storeFlags, 'release', 'c-web', '--dry-run', '--json']);
      expect(JSON.parse(dry.out)).toEqual([{ network: 'net-pods', containerId: 'c-web', ifname: 'eth0', ips: [ipWeb] }]);
      expect(await ids()).toContain('c-web');
      const validFile = join(dir, 'valid.json');
      writeFileSync(validFile, JSON.stringify([{ containerID: 'c-dns', ifname: 'eth0' }]));
      const gcPlan = await run([...storeFlags, '--network', 'net-pods', 'gc', '--dry-run', '--valid', validFile, '--node', 'node-a', '--json']);
      expect(gcPlan.code, gcPlan.err).toBe(0);
      expect(JSON.parse(gcPlan.out)[0].released).toEqual([ipWeb]);
      expect(await ids()).toEqual(['c-bare', 'c-db', 'c-dns', 'c-web']);
      const gc = await run([...storeFlags, '--network', 'net-pods', 'gc', '--valid', validFile, '--node', 'node-a', '--json']);
      expect(JSON.parse(gc.out)[0].released).toEqual([ipWeb]);
      expect(await ids()).toEqual(['c-bare', 'c-db', 'c-dns']);
    });
  }

  it('papercuts: --help, strand --version, a data dir that does not exist is exit 2', async () => {
    for (const argv of [['--help'], ['-h'], ['help'], ['ls', '--help']]) {
      const r = await run(argv);
      expect(r.code, argv.join(' ')).toBe(0);
      expect(r.out).toContain('usage: strand ipam');
    }
    const help = spawnSync(STRAND, ['ipam', '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/import-host-local/);
    const version = execFileSync(STRAND, ['--version'], { encoding: 'utf8' });
    expect(version).toMatch(/^strand \S+ \(commit \S+\)\nnode v/);
    const missing = join(dir, 'no-such-dir');
    for (const command of ['ls', 'usage', 'gc']) {
      const r = await run(['--data-dir', missing, command]);
      expect(r.code, command).toBe(2);
      expect(r.err).toBe(`strand ipam: data dir ${missing} does not exist (--data-dir, or the config's ipam.dataDir)\n`);
    }
  });

  it("the CLI's default etcd prefix is the one the manifests' conflist uses", () => {
    const yaml = readFileSync(join(repoRoot, 'manifests', 'strand.yaml'), 'utf8');
    const prefixes = [...yaml.matchAll(/"prefix":\s*"([^"]+)"/g)].map((m) => m[1]);
    expect(prefixes).toEqual([DEFAULT_ETCD_PREFIX]);
    expect(DEFAULT_ETCD_PREFIX).toBe('/strand/ipam');
  });

  it('the agent warns about --etcd-password like strand ipam does (before anything else can fail)', async () => {
    const agent = spawnSync(STRAND, ['agent', '--etcd-password', 'pw-on-cmdline', '--mode', 'no-such-mode'], { encoding: 'utf8', timeout: 20_000 });
    expect(agent.status).toBe(2);
    expect(agent.stderr).toContain('warning: --etcd-password is visible to other users of this machine (/proc/<pid>/cmdline)');
    expect(agent.stderr).not.toContain('pw-on-cmdline');
    const ipam = await run(['--etcd-endpoints', 'http://127.0.0.1:1', '--etcd-password', 'pw-on-cmdline', '--etcd-username', 'u', 'frobnicate']);
    expect(ipam.code).toBe(2);
    const flags = new Map([['etcd-password', 'x']]);
    const { etcdPassword } = await import('../../../ipam/cli.ts');
    const warned: string[] = [];
    etcdPassword(flags, {}, (l) => warned.push(l));
    expect(warned[0]).toContain('warning: --etcd-password is visible to other users of this machine (/proc/<pid>/cmdline)');
  });

  it('bad usage exits 2 with the usage text', async () => {
    const r = await run(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('usage: strand ipam');
  });
});
