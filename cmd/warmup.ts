// Warm-up for the start-up snapshot of the single executable (see cmd/main.ts). V8
// compiles a function the first time it is called; functions that ran while the snapshot
// was built keep their bytecode in it. So at build time each plugin runs the parts of a
// real call that do no I/O: the skel reads and validates a representative network
// config (every option set), the plugin parses it, STATUS of an L2-only network does
// nothing (macvlan and ipvlan with linkInContainer: no master is looked up), the result
// is converted to each spec version, strand-ipam parses a dual-stack host-local config,
// and the netlink codec encodes and decodes the messages an ADD exchanges. Nothing here
// touches the addon, the environment, a file or a namespace, so nothing
// process-specific is frozen into the snapshot.
import { formatResultJson, parseResult } from '../lib/cni/convert.ts';
import type { PluginIO } from '../lib/cni/skel.ts';
import type { NetConf, Result } from '../lib/cni/types.ts';
import { SPEC_VERSIONS } from '../lib/cni/types.ts';
import { formatRequest, parseMessages, type RtnlRequest } from '../lib/netlink/codec/index.ts';

type PluginMain = (io: PluginIO) => Promise<number>;

const RANGES = [[{ subnet: '10.250.0.0/24', rangeStart: '10.250.0.10', rangeEnd: '10.250.0.200', gateway: '10.250.0.1' }], [{ subnet: 'fd00:250::/64' }]];

const L2_CONFIGS: Record<string, Record<string, unknown>> = {
  'strand-bridge': {
    bridge: 'cni0',
    isGateway: true,
    isDefaultGateway: true,
    forceAddress: false,
    ipMasq: true,
    ipMasqBackend: 'iptables',
    mtu: 1500,
    hairpinMode: true,
    promiscMode: false,
    vlan: 0,
    preserveDefaultVlan: true,
    macspoofchk: false,
    enabledad: false,
    portIsolation: false,
  },
  'strand-macvlan': { master: 'eth0', mode: 'bridge', mtu: 1500, linkInContainer: true },
  'strand-ipvlan': { master: 'eth0', mode: 'l2', mtu: 1500, linkInContainer: true },
  // chained plugins: STATUS parses their config (an explicit backend: no default to find)
  'strand-portmap': {
    backend: 'iptables',
    snat: true,
    masqAll: false,
    markMasqBit: 13,
    conditionsV4: ['-d', '10.0.0.0/8'],
    runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '10.0.0.1' }] },
  },
  loopback: {},
};

const RESULT: Result = {
  cniVersion: '1.1.0',
  interfaces: [
    { name: 'cni0', mac: '02:00:00:00:00:01' },
    { name: 'veth0', mac: '02:00:00:00:00:02' },
    { name: 'eth0', mac: '02:00:00:00:00:03', sandbox: '/var/run/netns/x' },
  ],
  ips: [
    { address: '10.250.0.10/24', gateway: '10.250.0.1', interface: 2 },
    { address: 'fd00:250::10/64', gateway: 'fd00:250::1', interface: 2 },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.250.0.1' }, { dst: '::/0' }],
  dns: { nameservers: ['10.96.0.10'], search: ['svc.cluster.local'], options: ['ndots:5'] },
};

const MAC = '02:42:ac:11:00:02';
const NETLINK: RtnlRequest[] = [
  { kind: 'link', action: 'get', link: { name: 'cni0' } },
  { kind: 'link', action: 'new', link: { name: 'cni0', mtu: 1500, mac: MAC, info: { kind: 'bridge', vlanFiltering: false, defaultPvid: 1 } } },
  {
    kind: 'link',
    action: 'new',
    link: { name: 'veth0', mtu: 1500, flags: 1, change: 1, master: 3, info: { kind: 'veth', peer: { name: 'eth0', mac: MAC, netnsFd: 9, mtu: 1500 } } },
  },
  { kind: 'link', action: 'new', link: { name: 'eth0', parent: 2, netnsFd: 9, mtu: 1500, info: { kind: 'macvlan', mode: 'bridge' } } },
  { kind: 'link', action: 'new', link: { name: 'eth0', parent: 2, netnsFd: 9, info: { kind: 'ipvlan', mode: 'l2' } } },
  { kind: 'link', action: 'set', link: { index: 4, flags: 1, change: 1, operstate: 'up', slave: { kind: 'bridge', port: { hairpin: true, learning: true } } } },
  { kind: 'addr', action: 'new', addr: { version: 4, prefixLen: 24, index: 4, address: '10.250.0.10', local: '10.250.0.10', broadcast: '10.250.0.255' } },
  { kind: 'addr', action: 'new', addr: { version: 6, prefixLen: 64, index: 4, address: 'fd00:250::10', flags: 0x80 } },
  { kind: 'route', action: 'new', route: { version: 4, dstLen: 0, table: 254, protocol: 4, scope: 0, type: 1, gateway: '10.250.0.1', oif: 4 } },
  { kind: 'route', action: 'new', route: { version: 6, dstLen: 64, dst: 'fd00:250::', table: 254, type: 1, oif: 4, priority: 256 } },
  { kind: 'neigh', action: 'get', neigh: { family: 'bridge', index: 4 } },
];

function memoryIO(env: Record<string, string>, stdin: unknown, out: string[]): PluginIO {
  return {
    env,
    stdin: () => Promise.resolve(Buffer.from(JSON.stringify(stdin))),
    stdout: { write: (s) => void out.push(s) },
    stderr: { write: () => undefined },
  };
}

/** Runs the I/O-free part of every plugin once; throws when a plugin does not accept its warm-up config. */
export async function warmUp(load: (name: string) => Promise<PluginMain>): Promise<void> {
  for (const [name, options] of Object.entries(L2_CONFIGS)) {
    const main = await load(name);
    const conf = { cniVersion: '1.1.0', name: 'warmup', type: name, ...options, ipam: {} };
    for (const env of [{ CNI_COMMAND: 'VERSION' }, { CNI_COMMAND: 'STATUS', CNI_PATH: '/nonexistent' }]) {
      const out: string[] = [];
      const code = await main(memoryIO(env, conf, out));
      // strand-portmap's STATUS looks for its backend's tools: a build machine without
      // iptables answers 50 ("plugin not available"), which warms the same code
      const unavailable = name === 'strand-portmap' && env.CNI_COMMAND === 'STATUS' && /"code": 50/.test(out.join(''));
      if (code !== 0 && !unavailable) throw new Error(`snapshot warm-up: ${name} ${env.CNI_COMMAND} answered ${out.join('')}`);
    }
  }
  const ipam = await import('../ipam/main.ts');
  const conf = {
    cniVersion: '1.1.0',
    name: 'warmup',
    type: 'strand-bridge',
    ipam: { type: 'strand-ipam', ranges: RANGES, routes: [{ dst: '0.0.0.0/0' }] },
  } as NetConf;
  ipam.loadConfig(ipam.parseConfig(conf), 'IgnoreUnknown=1;K8S_POD_NAME=p', false);
  for (const v of SPEC_VERSIONS) if (v >= '0.3.0') parseResult(JSON.parse(formatResultJson(RESULT, v)), v);
  for (const [seq, req] of NETLINK.entries()) parseMessages(formatRequest(req, { ack: true, create: true, excl: true }, seq + 1));
}
