import { describe, expect, it } from 'vitest';
import { aliveNames, applyEvent, emptyView, viewFromListing, type ClusterView, type NodeRecord } from '../../../agent/model.ts';
import { desiredState, hostCidr, linkLocalFromMac, plan, routeMatches, type Actual, type LocalFacts } from '../../../agent/reconcile.ts';

const P = '/strand/ipam';

function node(name: string, ip: string, extra: Partial<NodeRecord> = {}): [string, string] {
  return [`${P}/nodes/${name}`, JSON.stringify({ name, addresses: [ip], mode: 'host-gw', ...extra })];
}
function alive(name: string): [string, string] {
  return [`${P}/alive/${name}`, JSON.stringify({ name, started: '2026-01-01T00:00:00.000Z' })];
}
function affinity(network: string, cidr: string, owner: string): [string, string] {
  return [`${P}/affinity/${network}/${cidr.replace('/', '-')}`, JSON.stringify({ network, cidr, node: owner })];
}
function block(network: string, cidr: string, owner: string, allocations: Record<string, object> = {}): [string, string] {
  return [`${P}/blocks/${network}/${cidr.replace('/', '-')}`, JSON.stringify({ network, cidr, node: owner, allocations })];
}

function cluster(kvs: Array<[string, string]>): ClusterView {
  const { view, invalid } = viewFromListing(P, kvs);
  expect(invalid).toEqual([]);
  return view;
}

const hostGw = (over: Partial<LocalFacts> = {}): LocalFacts => ({
  node: 'a',
  mode: 'host-gw',
  prefix: P,
  addresses: ['192.168.1.10'],
  links: [
    { name: 'eth0', addresses: ['192.168.1.10/24'] },
    { name: 'cni0', addresses: ['10.244.0.1/16'] },
  ],
  networks: [],
  ...over,
});

const vxlan = (over: Partial<LocalFacts> = {}): LocalFacts => hostGw({ mode: 'vxlan', vxlanDevice: 'strand.4096', ...over });

const noActual: Actual = { routes: [], fdb: [], neighs: [] };

describe('desiredState: host-gw', () => {
  const view = cluster([
    node('a', '192.168.1.10'),
    node('b', '192.168.1.11'),
    node('c', '192.168.1.12'),
    affinity('net', '10.244.0.0/26', 'a'),
    affinity('net', '10.244.0.64/26', 'b'),
    affinity('net', '10.244.0.128/26', 'c'),
    affinity('net', '10.244.0.192/26', 'c'),
  ]);

  it('routes every block of another node via that node, none for its own', () => {
    const d = desiredState(view, hostGw());
    expect(d.routes.map((r) => [r.dst, r.gw, r.dev, r.onlink])).toEqual([
      ['10.244.0.128/26', '192.168.1.12', undefined, undefined],
      ['10.244.0.192/26', '192.168.1.12', undefined, undefined],
      ['10.244.0.64/26', '192.168.1.11', undefined, undefined],
    ]);
    expect(d.fdb).toEqual([]);
    expect(d.neighs).toEqual([]);
    expect(d.problems).toEqual([]);
    expect(d.peers.map((p) => [p.name, p.blocks])).toEqual([
      ['b', ['10.244.0.64/26']],
      ['c', ['10.244.0.128/26', '10.244.0.192/26']],
    ]);
  });

  it('finds the pod bridge (its subnet covers managed blocks) for proxy ARP', () => {
    expect(desiredState(view, hostGw()).podLinks).toEqual(['cni0']);
  });

  it('drops the routes of a node whose record was removed (the node left), keeping the block as orphan', () => {
    const v = cluster(
      [...view.nodes]
        .map(([k, n]) => [k, JSON.stringify(n)] as [string, string])
        .filter(([k]) => !k.endsWith('/c'))
        .concat([affinity('net', '10.244.0.64/26', 'b'), affinity('net', '10.244.0.128/26', 'c')]),
    );
    const d = desiredState(v, hostGw());
    expect(d.routes.map((r) => r.dst)).toEqual(['10.244.0.64/26']);
    expect(d.orphanBlocks).toEqual([{ network: 'net', cidr: '10.244.0.128/26', node: 'c' }]);
  });

  it('routes only the configured networks', () => {
    const v = cluster([node('b', '192.168.1.11'), affinity('one', '10.1.0.0/26', 'b'), affinity('two', '10.2.0.0/26', 'b')]);
    expect(desiredState(v, hostGw({ networks: ['two'] })).routes.map((r) => r.dst)).toEqual(['10.2.0.0/26']);
    expect(desiredState(v, hostGw()).routes.map((r) => r.dst)).toEqual(['10.1.0.0/26', '10.2.0.0/26']);
  });

  it('reports a peer without an address of the block family instead of routing', () => {
    const v = cluster([node('b', '192.168.1.11'), affinity('net', 'fd00:10::/122', 'b')]);
    const d = desiredState(v, hostGw());
    expect(d.routes).toEqual([]);
    expect(d.problems).toEqual(['node b has no IPv6 address for host-gw routes']);
  });

  it('routes IPv6 blocks via the peer IPv6 address', () => {
    const v = cluster([
      [`${P}/nodes/b`, JSON.stringify({ name: 'b', addresses: ['192.168.1.11', 'FD00::B'], mode: 'host-gw' })],
      affinity('net', 'fd00:10::40/122', 'b'),
    ]);
    expect(desiredState(v, hostGw()).routes).toMatchObject([{ dst: 'fd00:10::40/122', gw: 'fd00::b' }]);
  });
});

describe('desiredState: borrowed addresses', () => {
  const base = [
    node('a', '192.168.1.10'),
    node('b', '192.168.1.11'),
    node('c', '192.168.1.12'),
    affinity('net', '10.244.0.0/26', 'a'),
    affinity('net', '10.244.0.64/26', 'b'),
  ];

  it("routes an address borrowed by c from b's block as a /32 towards c", () => {
    const v = cluster([
      ...base,
      block('net', '10.244.0.64/26', 'b', {
        '10.244.0.70': { containerId: 'x', ifname: 'eth0', node: 'c' },
        '10.244.0.66': { containerId: 'y', ifname: 'eth0' },
      }),
    ]);
    const d = desiredState(v, hostGw());
    expect(d.routes.map((r) => [r.dst, r.gw, r.why])).toEqual([
      ['10.244.0.64/26', '192.168.1.11', 'block'],
      ['10.244.0.70/32', '192.168.1.12', 'borrowed'],
    ]);
    expect(d.peers.find((p) => p.name === 'c')?.borrowed).toEqual(['10.244.0.70']);
  });

  it('the owner of the block also routes the borrowed address to the borrower', () => {
    const v = cluster([...base, block('net', '10.244.0.64/26', 'b', { '10.244.0.70': { containerId: 'x', ifname: 'eth0', node: 'c' } })]);
    const d = desiredState(v, hostGw({ node: 'b', addresses: ['192.168.1.11'] }));
    expect(d.routes.map((r) => [r.dst, r.gw])).toEqual([
      ['10.244.0.0/26', '192.168.1.10'],
      ['10.244.0.70/32', '192.168.1.12'],
    ]);
  });

  it('the borrower routes its own borrowed address to its pod bridge', () => {
    const v = cluster([...base, block('net', '10.244.0.0/26', 'a', { '10.244.0.9': { containerId: 'x', ifname: 'eth0', node: 'c' } })]);
    const d = desiredState(v, hostGw({ node: 'c', addresses: ['192.168.1.12'] }));
    expect(d.routes.find((r) => r.dst === '10.244.0.9/32')).toEqual({ dst: '10.244.0.9/32', dev: 'cni0', scope: 'link', node: 'c', why: 'local-borrowed' });
  });

  it('skips a borrowed address whose borrower has no record', () => {
    const v = cluster([...base, block('net', '10.244.0.64/26', 'b', { '10.244.0.70': { containerId: 'x', ifname: 'eth0', node: 'gone' } })]);
    expect(desiredState(v, hostGw()).routes.map((r) => r.dst)).toEqual(['10.244.0.64/26']);
  });

  it('an IPv6 borrowed address becomes a /128', () => {
    expect(hostCidr('fd00::1:5')).toBe('fd00::1:5/128');
    expect(hostCidr('10.1.2.3')).toBe('10.1.2.3/32');
  });
});

describe('desiredState: vxlan', () => {
  const macB = '02:00:00:00:00:0b';
  const macC = '02:00:00:00:00:0c';
  const view = cluster([
    node('a', '192.168.1.10', { mode: 'vxlan', vtepMac: '02:00:00:00:00:0a' }),
    node('b', '192.168.2.10', { mode: 'vxlan', vtepMac: macB }),
    node('c', '192.168.3.10', { mode: 'vxlan', vtepMac: macC.toUpperCase() }),
    affinity('net', '10.244.0.64/26', 'b'),
    affinity('net', '10.244.0.128/26', 'c'),
    affinity('net', 'fd00:10::40/122', 'b'),
  ]);

  it('routes through the vxlan device onlink, with FDB and neighbour entries per peer', () => {
    const d = desiredState(view, vxlan());
    expect(d.routes.map((r) => [r.dst, r.gw, r.dev, r.onlink, r.src])).toEqual([
      ['10.244.0.128/26', '192.168.3.10', 'strand.4096', true, '192.168.1.10'],
      ['10.244.0.64/26', '192.168.2.10', 'strand.4096', true, '192.168.1.10'],
      ['fd00:10::40/122', linkLocalFromMac(macB), 'strand.4096', true, undefined],
    ]);
    expect(d.fdb).toEqual([
      { mac: macB, dst: '192.168.2.10', node: 'b' },
      { mac: macC, dst: '192.168.3.10', node: 'c' },
    ]);
    expect(d.neighs.map((n) => [n.ip, n.mac])).toEqual([
      ['192.168.2.10', macB],
      ['192.168.3.10', macC],
      [linkLocalFromMac(macB), macB],
    ]);
  });

  it('gives a live peer without blocks its FDB and neighbour entries already (no routes)', () => {
    const v = cluster([node('d', '192.168.4.10', { mode: 'vxlan', vtepMac: '02:00:00:00:00:0d' }), alive('d')]);
    const d = desiredState(v, vxlan());
    expect(d.routes).toEqual([]);
    expect(d.fdb).toEqual([{ mac: '02:00:00:00:00:0d', dst: '192.168.4.10', node: 'd' }]);
    expect(d.neighs).toEqual([{ ip: '192.168.4.10', mac: '02:00:00:00:00:0d', node: 'd' }]);
    expect(d.peers).toMatchObject([{ name: 'd', alive: true }]);
  });

  it('keeps routes, FDB and neighbour entries of a peer whose agent is away while it owns blocks', () => {
    // b and c have no liveness key (their agents are away): b still owns blocks, d owns none
    const v = cluster([
      ...[...view.nodes].map(([k, n]) => [k, JSON.stringify(n)] as [string, string]),
      ...[...view.affinities].map(([k, a]) => [k, JSON.stringify(a)] as [string, string]),
      node('d', '192.168.4.10', { mode: 'vxlan', vtepMac: '02:00:00:00:00:0d' }),
    ]);
    const d = desiredState(v, vxlan());
    expect(d.routes.map((r) => r.dst)).toEqual(['10.244.0.128/26', '10.244.0.64/26', 'fd00:10::40/122']);
    expect(d.fdb.map((f) => f.node)).toEqual(['b', 'c']);
    expect(d.neighs.map((n) => n.node)).toEqual(['b', 'c', 'b']);
    expect(d.peers.map((p) => [p.name, p.alive])).toEqual([
      ['b', false],
      ['c', false],
      ['d', false],
    ]);
    expect(d.orphanBlocks).toEqual([]);
  });

  it('never takes the vxlan device for a pod link', () => {
    const d = desiredState(view, vxlan({ links: [{ name: 'strand.4096', addresses: ['10.244.0.0/16'] }] }));
    expect(d.podLinks).toEqual([]);
  });

  it('reports a peer without VTEP MAC (agent in host-gw mode)', () => {
    const v = cluster([node('b', '192.168.2.10'), affinity('net', '10.244.0.64/26', 'b')]);
    const d = desiredState(v, vxlan());
    expect(d.routes).toEqual([]);
    expect(d.problems).toEqual(['node b has no VTEP MAC (its agent is not in vxlan mode)']);
  });

  it('derives the EUI-64 link-local address from a MAC', () => {
    expect(linkLocalFromMac('52:54:00:12:34:56')).toBe('fe80::5054:ff:fe12:3456');
    expect(linkLocalFromMac('02:00:00:00:00:0b')).toBe('fe80::ff:fe00:b');
  });
});

describe('desiredState: flat', () => {
  it('routes nothing and turns on proxy ARP nowhere, whatever blocks and borrowed addresses etcd holds', () => {
    const view = cluster([
      node('a', '192.168.1.10', { mode: 'flat' }),
      node('b', '192.168.1.11', { mode: 'flat' }),
      affinity('net', '192.168.1.64/26', 'b'),
      block('net', '192.168.1.64/26', 'b', { '192.168.1.70': { containerId: 'x', ifname: 'eth0', node: 'a' } }),
    ]);
    const d = desiredState(view, hostGw({ mode: 'flat', links: [{ name: 'br0', addresses: ['192.168.1.10/24'] }] }));
    expect(d.routes).toEqual([]);
    expect(d.podLinks).toEqual([]);
    expect(d.orphanBlocks).toEqual([]);
    expect(d.problems).toEqual([]);
    expect(d.peers.map((p) => p.name)).toEqual(['b']);
    expect(plan(d, { routes: [], fdb: [], neighs: [] })).toEqual([]);
  });
});

describe('plan', () => {
  const view = cluster([node('b', '192.168.2.10', { mode: 'vxlan', vtepMac: '02:00:00:00:00:0b' }), affinity('net', '10.244.0.64/26', 'b')]);

  it('adds everything on an empty node, entries before routes', () => {
    const ops = plan(desiredState(view, vxlan()), noActual);
    expect(ops.map((o) => `${o.op} ${o.action}`)).toEqual(['fdb add', 'neigh add', 'route add']);
  });

  it('does nothing when the kernel already matches', () => {
    const d = desiredState(view, vxlan());
    const actual: Actual = {
      routes: [{ dst: '10.244.0.64/26', gw: '192.168.2.10', dev: 'strand.4096', onlink: true, src: '192.168.1.10' }],
      fdb: [
        { mac: '02:00:00:00:00:0b', dst: '192.168.2.10', permanent: true },
        { mac: '00:00:00:00:00:00', dst: '192.168.9.9', permanent: true },
      ],
      neighs: [
        { ip: '192.168.2.10', mac: '02:00:00:00:00:0b', permanent: true },
        { ip: '192.168.7.7', permanent: false },
      ],
    };
    expect(plan(d, actual)).toEqual([]);
  });

  it('replaces what changed and deletes what is no longer wanted, routes before entries', () => {
    const d = desiredState(view, vxlan());
    const actual: Actual = {
      routes: [
        { dst: '10.244.0.64/26', gw: '192.168.2.99', dev: 'strand.4096', onlink: true },
        { dst: '10.244.0.128/26', gw: '192.168.3.10', dev: 'strand.4096', onlink: true },
      ],
      fdb: [
        { mac: '02:00:00:00:00:0b', dst: '192.168.2.99', permanent: true },
        { mac: '02:00:00:00:00:0c', dst: '192.168.3.10', permanent: true },
      ],
      neighs: [
        { ip: '192.168.2.10', mac: '02:00:00:00:00:ff', permanent: true },
        { ip: '192.168.3.10', mac: '02:00:00:00:00:0c', permanent: true },
      ],
    };
    expect(plan(d, actual).map((o) => `${o.op} ${o.action} ${o.op === 'route' ? o.route.dst : o.op === 'fdb' ? o.entry.mac : o.entry.ip}`)).toEqual([
      'fdb replace 02:00:00:00:00:0b',
      'neigh replace 192.168.2.10',
      'route replace 10.244.0.64/26',
      'route del 10.244.0.128/26',
      'neigh del 192.168.3.10',
      'fdb del 02:00:00:00:00:0c',
    ]);
  });

  it('host-gw ignores the output device the kernel picked; a node leaving deletes its routes', () => {
    const v = cluster([node('b', '192.168.1.11'), affinity('net', '10.244.0.64/26', 'b')]);
    const d = desiredState(v, hostGw());
    expect(plan(d, { routes: [{ dst: '10.244.0.64/26', gw: '192.168.1.11', dev: 'eth0', onlink: false }], fdb: [], neighs: [] })).toEqual([]);
    const gone = desiredState(cluster([affinity('net', '10.244.0.64/26', 'b')]), hostGw());
    expect(
      plan(gone, { routes: [{ dst: '10.244.0.64/26', gw: '192.168.1.11', dev: 'eth0', onlink: false }], fdb: [], neighs: [] }).map(
        (o) => `${o.op} ${o.action}`,
      ),
    ).toEqual(['route del']);
  });

  it('compares addresses canonically', () => {
    expect(routeMatches({ dst: 'fd00::/64', gw: 'FD00::0:1', node: 'b', why: 'block' }, { dst: 'fd00::/64', gw: 'fd00::1', onlink: false })).toBe(true);
    expect(
      routeMatches({ dst: '10.0.0.0/8', gw: '10.0.0.1', onlink: true, node: 'b', why: 'block' }, { dst: '10.0.0.0/8', gw: '10.0.0.1', onlink: false }),
    ).toBe(false);
  });
});

describe('model events', () => {
  it('applies puts and deletes by key, ignores foreign keys, marks malformed records', () => {
    const v = emptyView();
    expect(applyEvent(v, P, 'put', `${P}/attachments/net/x/eth0`, '{}')).toBe('ignored');
    expect(applyEvent(v, P, 'put', `${P}/nodes/b`, JSON.stringify({ name: 'b', addresses: ['10.0.0.2'], mode: 'vxlan', vtepMac: '02:AA:00:00:00:01' }))).toBe(
      'changed',
    );
    expect(v.nodes.get(`${P}/nodes/b`)?.vtepMac).toBe('02:aa:00:00:00:01');
    expect(applyEvent(v, P, 'put', `${P}/nodes/b`, JSON.stringify({ name: 'b', addresses: ['10.0.0.2'], mode: 'vxlan', vtepMac: '02:aa:00:00:00:01' }))).toBe(
      'unchanged',
    );
    expect(applyEvent(v, P, 'put', `${P}/nodes/b`, 'not json')).toBe('invalid');
    expect(v.nodes.size).toBe(0);
    expect(applyEvent(v, P, 'delete', `${P}/nodes/b`)).toBe('unchanged');
    const [ak, av] = affinity('net', '10.244.0.0/26', 'b');
    expect(applyEvent(v, P, 'put', ak, av)).toBe('changed');
    expect(applyEvent(v, P, 'delete', ak)).toBe('changed');
    expect(v.affinities.size).toBe(0);
  });

  it('keeps blocks only while they hold borrowed addresses', () => {
    const v = emptyView();
    const [k, plain] = block('net', '10.244.0.0/26', 'a', { '10.244.0.2': { containerId: 'x', ifname: 'eth0' } });
    expect(applyEvent(v, P, 'put', k, plain)).toBe('unchanged');
    const [, withB] = block('net', '10.244.0.0/26', 'a', { '10.244.0.3': { containerId: 'y', ifname: 'eth0', node: 'c' } });
    expect(applyEvent(v, P, 'put', k, withB)).toBe('changed');
    expect(v.borrowed.get(k)).toEqual([{ network: 'net', ip: '10.244.0.3', block: '10.244.0.0/26', owner: 'a', borrower: 'c' }]);
    expect(applyEvent(v, P, 'put', k, plain)).toBe('changed');
    expect(v.borrowed.size).toBe(0);
  });

  it('tracks liveness keys; one under another name does not count', () => {
    const v = emptyView();
    const [k, val] = alive('b');
    expect(applyEvent(v, P, 'put', k, val)).toBe('changed');
    expect(aliveNames(v, P)).toEqual(new Set(['b']));
    expect(applyEvent(v, P, 'put', `${P}/alive/c`, val)).toBe('changed');
    expect(aliveNames(v, P)).toEqual(new Set(['b']));
    expect(applyEvent(v, P, 'delete', k)).toBe('changed');
    expect(aliveNames(v, P)).toEqual(new Set());
    expect(applyEvent(v, P, 'put', k, '{"started":1}')).toBe('invalid');
  });

  it("ignores a node record stored under another node's key", () => {
    const v = cluster([[`${P}/nodes/b`, JSON.stringify({ name: 'evil', addresses: ['10.0.0.9'], mode: 'host-gw' })], affinity('net', '10.244.0.0/26', 'evil')]);
    expect(desiredState(v, hostGw()).routes).toEqual([]);
  });
});
