import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AgentConfigError,
  DEFAULT_STATE_FILE,
  DEFAULT_TAKEOVER_RECORD,
  flatRecordOf,
  loadAgentConfig,
  loadRawConfig,
  parseAgentConfig,
  parseDuration,
  STRAND_ROUTE_PROTOCOL,
} from '../../../agent/config.ts';
import { vtepMacFor } from '../../../agent/dataplane.ts';
import { formatState, readiness, readState, STATE_VERSION, writeState, type AgentState } from '../../../agent/status.ts';

const etcd = { endpoints: ['http://127.0.0.1:2379'] };
let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});
function tmp(): string {
  dir ??= mkdtempSync(join(tmpdir(), 's9-unit-'));
  return dir;
}

function fails(fn: () => unknown): AgentConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof AgentConfigError) return e;
    throw e;
  }
  throw new Error('did not fail');
}

describe('agent config: mode flat', () => {
  it('takes the uplink from --uplink or "flat", with bridge br0 and the record in /run/strand by default', () => {
    const c = loadAgentConfig(
      new Map([
        ['etcd-endpoints', 'http://127.0.0.1:2379'],
        ['mode', 'flat'],
        ['uplink', 'eth0'],
        ['network', 'flatnet'],
      ]),
      {},
    );
    expect(c.mode).toBe('flat');
    expect(c.flat).toEqual({ uplink: 'eth0', bridge: 'br0', record: DEFAULT_TAKEOVER_RECORD, vlans: [] });
    const d = parseAgentConfig(
      { etcd, mode: 'flat', networks: ['n'], flat: { uplink: 'ens3', bridge: 'brflat', record: '/tmp/x.json', vlans: [200, 100, 200] } },
      {},
    );
    expect(d.flat).toEqual({ uplink: 'ens3', bridge: 'brflat', record: '/tmp/x.json', vlans: [100, 200] });
    const f = loadAgentConfig(
      new Map([
        ['etcd-endpoints', 'http://127.0.0.1:2379'],
        ['mode', 'flat'],
        ['uplink', 'eth0'],
        ['network', 'n'],
        ['flat-vlans', '30,20'],
      ]),
      {},
    );
    expect(f.flat?.vlans).toEqual([20, 30]);
    expect(parseAgentConfig({ etcd }, {}).flat).toBeUndefined();
  });

  it('refuses a flat mode without uplink or networks, flat settings in another mode, bad names, unknown keys', () => {
    expect(fails(() => parseAgentConfig({ etcd, mode: 'flat' }, {})).field).toBe('flat');
    expect(fails(() => parseAgentConfig({ etcd, mode: 'flat', flat: { uplink: 'eth0' } }, {})).field).toBe('networks');
    expect(fails(() => parseAgentConfig({ etcd, mode: 'flat', flat: {} }, {})).field).toBe('flat.uplink');
    expect(fails(() => parseAgentConfig({ etcd, mode: 'host-gw', flat: { uplink: 'eth0' } }, {})).field).toBe('flat');
    expect(fails(() => parseAgentConfig({ etcd, mode: 'flat', flat: { uplink: 'a-name-far-too-long' } }, {})).field).toBe('flat.uplink');
    expect(fails(() => parseAgentConfig({ etcd, mode: 'flat', flat: { uplink: 'eth0', bridge: 'eth0' } }, {})).field).toBe('flat.bridge');
    expect(fails(() => parseAgentConfig({ etcd, mode: 'flat', flat: { uplink: 'eth0', bond: 'x' } }, {})).field).toBe('flat.bond');
    expect(fails(() => parseAgentConfig({ etcd, mode: 'flat', flat: { uplink: 'eth0', vlans: [1] } }, {})).field).toBe('flat.vlans[0]');
  });

  it('--restore needs only the record path (no etcd)', () => {
    expect(flatRecordOf(loadRawConfig(new Map()))).toBe(DEFAULT_TAKEOVER_RECORD);
    expect(flatRecordOf(loadRawConfig(new Map([['flat-record', '/tmp/r.json']])))).toBe('/tmp/r.json');
  });
});

describe('agent config', () => {
  it('has defaults and takes the node name from the environment like strand-ipam', () => {
    const c = parseAgentConfig({ etcd }, { K8S_NODE_NAME: 'k8s-node', NODENAME: 'other' });
    expect(c).toMatchObject({
      nodeName: 'k8s-node',
      nodeIPs: [],
      networks: [],
      mode: 'host-gw',
      vxlan: { vni: 4096, port: 4789, device: 'strand.4096' },
      leaseTTLSeconds: 20,
      resyncMs: 30_000,
      stateFile: DEFAULT_STATE_FILE,
      routeProtocol: STRAND_ROUTE_PROTOCOL,
      proxyArp: true,
      podMtuFile: '/run/strand/pod-mtu',
      metricsAddress: { host: '127.0.0.1', port: 9476 },
      reconcileStuckMs: 60_000,
      logFormat: 'text',
    });
    expect(c.etcd.prefix).toBe('/strand/ipam');
    expect(parseAgentConfig({ etcd }, { NODENAME: 'nn' }).nodeName).toBe('nn');
  });

  it('takes the metrics address, the stuck-reconcile limit and the pod MTU file, from flags too', () => {
    const c = loadAgentConfig(
      new Map([
        ['etcd-endpoints', 'http://127.0.0.1:2379'],
        ['metrics-address', '[::1]:9999'],
        ['reconcile-stuck-after', '5s'],
        ['pod-mtu-file', '/tmp/x/pod-mtu'],
        ['log-format', 'json'],
      ]),
      {},
    );
    expect(c).toMatchObject({ metricsAddress: { host: '::1', port: 9999 }, reconcileStuckMs: 5000, podMtuFile: '/tmp/x/pod-mtu', logFormat: 'json' });
    expect(parseAgentConfig({ etcd, metricsAddress: ':9476' }, {}).metricsAddress).toEqual({ host: '::', port: 9476 });
    expect(() => parseAgentConfig({ etcd, metricsAddress: 'localhost:9476' }, {})).toThrow(/^metricsAddress: invalid listen address/);
    expect(() => parseAgentConfig({ etcd, reconcileStuckAfter: 'soon' }, {})).toThrow(/reconcileStuckAfter/);
  });

  it("ipamDataDir from the --cni-conf's ipam.dataDir (else the default), nodeReleaseAfter as a duration or never", () => {
    const d = tmp();
    const conf = (ipam: Record<string, unknown>): string => {
      const f = join(d, `ipam-${Object.keys(ipam).join('-')}.conflist`);
      writeFileSync(
        f,
        JSON.stringify({
          cniVersion: '1.0.0',
          name: 'n',
          plugins: [{ type: 'strand-bridge', ipam: { type: 'strand-ipam', etcd: { endpoints: 'http://10.0.0.1:2379' }, ...ipam } }],
        }),
      );
      return f;
    };
    expect(loadAgentConfig(new Map([['cni-conf', conf({ dataDir: '/srv/ipam' })]]), {})).toMatchObject({
      ipamDataDir: '/srv/ipam',
      nodeReleaseAfterMs: 3_600_000,
    });
    expect(loadAgentConfig(new Map([['cni-conf', conf({})]]), {}).ipamDataDir).toBe('/var/lib/cni/networks');
    const flags = (extra: Array<[string, string]>): Map<string, string> => new Map([['cni-conf', conf({ dataDir: '/srv/ipam' })], ...extra]);
    expect(loadAgentConfig(flags([['ipam-data-dir', '/x']]), {}).ipamDataDir).toBe('/x');
    expect(loadAgentConfig(flags([['node-release-after', '2h']]), {}).nodeReleaseAfterMs).toBe(7_200_000);
    expect(loadAgentConfig(flags([['node-release-after', 'never']]), {}).nodeReleaseAfterMs).toBeUndefined();
    expect(() => loadAgentConfig(flags([['node-release-after', 'soon']]), {})).toThrow(/^nodeReleaseAfter: invalid duration/);
  });

  it('merges --cni-conf, --config and flags, flags last', () => {
    const d = tmp();
    writeFileSync(
      join(d, 'net.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'strand',
        plugins: [
          { type: 'strand-bridge', ipam: { type: 'strand-ipam', etcd: { endpoints: 'http://10.0.0.1:2379', prefix: '/strand' } } },
          { type: 'portmap' },
        ],
      }),
    );
    writeFileSync(join(d, 'agent.json'), JSON.stringify({ mode: 'vxlan', vxlan: { vni: 7, port: 8472 }, leaseTTL: '5s' }));
    const c = loadAgentConfig(
      new Map([
        ['cni-conf', join(d, 'net.conflist')],
        ['config', join(d, 'agent.json')],
        ['node-ip', '192.168.1.10,FD00::A'],
        ['vni', '9'],
        ['resync', '1500ms'],
        ['node-name', 'a'],
      ]),
      {},
    );
    expect(c).toMatchObject({
      nodeName: 'a',
      nodeIPs: ['192.168.1.10', 'fd00::a'],
      networks: ['strand'],
      mode: 'vxlan',
      vxlan: { vni: 9, port: 8472, device: 'strand.9' },
      leaseTTLSeconds: 5,
      resyncMs: 1500,
    });
    expect(c.etcd).toMatchObject({ endpoints: ['http://10.0.0.1:2379'], prefix: '/strand' });
  });

  it('names the field at fault', () => {
    expect(fails(() => parseAgentConfig({}, {})).field).toBe('etcd');
    expect(fails(() => parseAgentConfig({ etcd, mode: 'bgp' }, {})).message).toBe('mode: must be "host-gw", "vxlan" or "flat", not "bgp"');
    expect(fails(() => parseAgentConfig({ etcd, vxlan: { vni: 0 } }, {})).field).toBe('vxlan.vni');
    expect(fails(() => parseAgentConfig({ etcd, vxlan: { device: 'a-name-far-too-long' } }, {})).field).toBe('vxlan.device');
    expect(fails(() => parseAgentConfig({ etcd, nodeIP: ['10.0.0.1', '10.0.0.2'] }, {})).field).toBe('nodeIP[1]');
    expect(fails(() => parseAgentConfig({ etcd, nodeIP: 'nope' }, {})).field).toBe('nodeIP[0]');
    expect(fails(() => parseAgentConfig({ etcd, leaseTTL: 'soon' }, {})).field).toBe('leaseTTL');
    expect(fails(() => parseAgentConfig({ etcd, routeProtocol: 255 }, {})).field).toBe('routeProtocol');
    expect(fails(() => parseAgentConfig({ etcd, colour: 'blue' }, {})).field).toBe('colour');
    expect(fails(() => parseAgentConfig({ etcd: { endpoints: [] } }, {})).field).toBe('etcd.endpoints');
    expect(fails(() => parseAgentConfig({ etcd: { ...etcd, tls: { ca: '/nonexistent/ca.pem' } } }, {})).field).toBe('etcd.tls.ca');
    expect(fails(() => loadAgentConfig(new Map([['config', '/nonexistent.json']]), {})).field).toBe('--config');
  });

  it('rejects a conflist without a strand-ipam etcd store', () => {
    const d = tmp();
    writeFileSync(join(d, 'c.conf'), JSON.stringify({ cniVersion: '1.0.0', name: 'x', type: 'bridge', ipam: { type: 'host-local' } }));
    expect(fails(() => loadAgentConfig(new Map([['cni-conf', join(d, 'c.conf')]]), {})).message).toContain('no plugin with a strand-ipam');
  });

  it('parses durations', () => {
    expect(parseDuration(250, 'x')).toBe(250);
    expect(parseDuration('2s', 'x')).toBe(2000);
    expect(parseDuration('1m', 'x')).toBe(60_000);
    expect(parseDuration('30ms', 'x')).toBe(30);
    expect(() => parseDuration('0s', 'x')).toThrow(AgentConfigError);
  });

  it('derives a stable, locally administered unicast VTEP MAC from the node name', () => {
    const m = vtepMacFor('node-a');
    expect(m).toBe(vtepMacFor('node-a'));
    expect(m).not.toBe(vtepMacFor('node-b'));
    const first = parseInt(m.slice(0, 2), 16);
    expect(first & 1).toBe(0);
    expect(first & 2).toBe(2);
  });
});

describe('agent state file', () => {
  const base: AgentState = {
    version: STATE_VERSION,
    pid: 4242,
    node: 'a',
    mode: 'host-gw',
    addresses: ['192.168.1.10'],
    started: '2026-01-01T00:00:00.000Z',
    updated: '2026-01-01T00:01:00.000Z',
    staleAfterMs: 30_000,
    synced: true,
    registered: true,
    etcd: { connected: true, revision: 9 },
    routeProtocol: 115,
    peers: [
      { name: 'b', alive: true, addresses: ['192.168.1.11'], blocks: ['10.244.0.64/26'], borrowed: [] },
      { name: 'c', alive: false, addresses: ['192.168.1.12'], blocks: ['10.244.0.128/26'], borrowed: [] },
    ],
    routes: [{ dst: '10.244.0.64/26', gw: '192.168.1.11', node: 'b', why: 'block' }],
    orphanBlocks: [],
    podLinks: ['cni0'],
    problems: [],
  };
  const at = Date.parse(base.updated) + 1000;

  it('is ready only when alive, fresh and synced', () => {
    expect(readiness(base, at, () => true)).toEqual({ ready: true, running: true, stale: false });
    expect(readiness(base, at, () => false)).toMatchObject({ ready: false, reason: 'agent (pid 4242) is not running' });
    expect(readiness(base, at + 60_000, () => true)).toMatchObject({ ready: false, stale: true });
    expect(readiness({ ...base, synced: false, etcd: { connected: false, lastError: 'watch disconnected' } }, at, () => true)).toMatchObject({
      ready: false,
      reason: 'etcd unreachable: watch disconnected',
    });
  });

  it('round-trips through the file and formats peers and routes', () => {
    const f = join(tmp(), 'sub', 'agent.json');
    writeState(f, base);
    expect(readState(f)).toEqual(base);
    const text = formatState(
      base,
      readiness(base, at, () => true),
    );
    expect(text).toContain('state:      synced');
    expect(text).toMatch(/b\s+192\.168\.1\.11\s+blocks 10\.244\.0\.64\/26\n/);
    expect(text).toMatch(/c\s+192\.168\.1\.12\s+blocks 10\.244\.0\.128\/26 \(agent away\)\n/);
    expect(text).toMatch(/10\.244\.0\.64\/26\s+via 192\.168\.1\.11 -> b/);
    expect(() => readState(join(tmp(), 'missing.json'))).toThrow(/is strand agent running/);
  });
});
