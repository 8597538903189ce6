import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CniError } from '../../../lib/cni/errors.ts';
import type { NetConf } from '../../../lib/cni/types.ts';
import { parseIpamConfig, parseResolvConf, rangeSetText } from '../../../ipam/config.ts';
import { formatIP } from '../../../lib/addr/cidr.ts';
import { parseConfig } from '../../../ipam/main.ts';

function conf(ipam: Record<string, unknown>, extra: Partial<NetConf> = {}): NetConf {
  return { cniVersion: '1.1.0', name: 'net1', type: 'bridge', ipam: { type: 'strand-ipam', ...ipam }, ...extra };
}

/** The CniError thrown by parsing (schema first, as the plugin does, then semantics). */
function errorOf(ipam: Record<string, unknown>, extra: Partial<NetConf> = {}, cniArgs = ''): CniError {
  try {
    const c = conf(ipam, extra);
    parseConfig(c);
    parseIpamConfig(c, { cniArgs });
  } catch (e) {
    if (e instanceof CniError) return e;
    throw e;
  }
  throw new Error('expected a config error');
}

const text = (e: CniError): string => `${e.msg} ${e.details}`;

describe('strand-ipam config (host-local compatible)', () => {
  it('applies host-local defaults: gateway .1, rangeStart .1, rangeEnd before broadcast (IPv6: last)', () => {
    const c = parseIpamConfig(conf({ ranges: [[{ subnet: '10.1.0.0/24' }], [{ subnet: 'fd00::/120' }]] }));
    expect(c.rangeSets.map(rangeSetText)).toEqual(['10.1.0.1-10.1.0.254', 'fd00::1-fd00::ff']);
    expect(c.dataDir).toBe('/var/lib/cni/networks');
    // the local store: one block per range (host-local's order); etcd: /26 and /122 blocks
    expect(c.blockSize).toEqual({ 4: 0, 6: 0 });
    const e = parseIpamConfig(conf({ ranges: [[{ subnet: '10.1.0.0/24' }]], etcd: { endpoints: ['127.0.0.1:2379'] } }));
    expect(e.blockSize).toEqual({ 4: 26, 6: 122 });
    expect(parseIpamConfig(conf({ ranges: [[{ subnet: '10.1.0.0/24' }]], blockSize: 28 })).blockSize[4]).toBe(28);
  });

  it('accepts the legacy top-level subnet and prepends ipRanges from runtimeConfig', () => {
    const c = parseIpamConfig(
      conf(
        { subnet: '10.2.0.0/24', rangeStart: '10.2.0.10', gateway: '10.2.0.254', ranges: [[{ subnet: 'fd00::/64' }]] },
        {
          runtimeConfig: { ipRanges: [[{ subnet: '10.3.0.0/24' }]] },
        },
      ),
    );
    expect(c.rangeSets.map(rangeSetText)).toEqual(['10.3.0.1-10.3.0.254', '10.2.0.10-10.2.0.254', 'fd00::1-fd00::ffff:ffff:ffff:ffff']);
  });

  it('parses routes and resolvConf', () => {
    const dir = mkdtempSync(join(tmpdir(), 's4-resolv-'));
    writeFileSync(join(dir, 'resolv.conf'), 'nameserver 10.0.0.10\nsearch a.svc b.svc\noptions ndots:5\ndomain cluster.local\n');
    const c = parseIpamConfig(conf({ ranges: [[{ subnet: '10.1.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }], resolvConf: join(dir, 'resolv.conf') }));
    expect(c.routes).toEqual([{ dst: '0.0.0.0/0' }]);
    expect(c.dns).toEqual({ nameservers: ['10.0.0.10'], search: ['a.svc', 'b.svc'], options: ['ndots:5'], domain: 'cluster.local' });
    expect(parseResolvConf('# x\n;y\n')).toEqual({});
    rmSync(dir, { recursive: true, force: true });
  });

  const cases: Array<[string, Record<string, unknown>, Partial<NetConf>, string, RegExp]> = [
    ['invalid CIDR', { ranges: [[{ subnet: '10.1.0.0/33' }]] }, {}, '', /ipam\.ranges\[0\]\[0\]\.subnet/],
    ['host bits set', { ranges: [[{ subnet: '10.1.0.5/24' }]] }, {}, '', /ipam\.ranges\[0\]\[0\]\.subnet.*host bits/],
    ['too small', { ranges: [[{ subnet: '10.1.0.0/31' }]] }, {}, '', /subnet.*too small/],
    ['overlapping range sets', { ranges: [[{ subnet: '10.1.0.0/24' }], [{ subnet: '10.1.0.0/16' }]] }, {}, '', /ipam\.ranges\[1\]\[0\].*overlaps/],
    [
      'overlapping ranges in a set',
      {
        ranges: [
          [
            { subnet: '10.1.0.0/24', rangeEnd: '10.1.0.100' },
            { subnet: '10.1.0.0/24', rangeStart: '10.1.0.50' },
          ],
        ],
      },
      {},
      '',
      /ipam\.ranges\[0\]\[1\].*overlaps/,
    ],
    ['mixed families in a set', { ranges: [[{ subnet: '10.1.0.0/24' }, { subnet: 'fd00::/64' }]] }, {}, '', /ipam\.ranges\[0\]\[1\].*famil/],
    [
      'rangeStart outside subnet',
      { ranges: [[{ subnet: '10.1.0.0/24', rangeStart: '10.2.0.1' }]] },
      {},
      '',
      /ipam\.ranges\[0\]\[0\]\.rangeStart.*not in subnet/,
    ],
    ['rangeEnd outside subnet', { ranges: [[{ subnet: '10.1.0.0/24', rangeEnd: '10.2.0.1' }]] }, {}, '', /ipam\.ranges\[0\]\[0\]\.rangeEnd.*not in subnet/],
    ['gateway outside subnet', { ranges: [[{ subnet: '10.1.0.0/24', gateway: '10.9.0.1' }]] }, {}, '', /ipam\.ranges\[0\]\[0\]\.gateway.*not in subnet/],
    ['gateway of the other family', { ranges: [[{ subnet: '10.1.0.0/24', gateway: 'fd00::1' }]] }, {}, '', /gateway.*not an IPv4/],
    [
      'rangeStart after rangeEnd',
      { ranges: [[{ subnet: '10.1.0.0/24', rangeStart: '10.1.0.9', rangeEnd: '10.1.0.5' }]] },
      {},
      '',
      /rangeStart.*after rangeEnd/,
    ],
    ['no ranges', {}, {}, '', /ipam\.ranges.*no IP ranges/],
    [
      'requested IP outside every range (args)',
      { ranges: [[{ subnet: '10.1.0.0/24' }]] },
      { args: { cni: { ips: ['10.7.0.1'] } } },
      '',
      /args\.cni\.ips\[0\].*not in any configured range/,
    ],
    [
      'requested IP outside every range (runtimeConfig)',
      { ranges: [[{ subnet: '10.1.0.0/24' }]] },
      { runtimeConfig: { ips: ['10.7.0.1/24'] } },
      '',
      /runtimeConfig\.ips\[0\]/,
    ],
    ['requested IP outside every range (CNI_ARGS)', { ranges: [[{ subnet: '10.1.0.0/24' }]] }, {}, 'IP=10.7.0.1', /CNI_ARGS IP/],
    [
      'two requested IPs for one range set',
      { ranges: [[{ subnet: '10.1.0.0/24' }]] },
      { args: { cni: { ips: ['10.1.0.5', '10.1.0.6'] } } },
      '',
      /one address per range set/,
    ],
    [
      'bad TLS file path',
      { ranges: [[{ subnet: '10.1.0.0/24' }]], etcd: { endpoints: ['127.0.0.1:2379'], tls: { ca: '/nonexistent/ca.pem' } } },
      {},
      '',
      /ipam\.etcd\.tls\.ca.*ENOENT/,
    ],
    ['etcd without endpoints', { ranges: [[{ subnet: '10.1.0.0/24' }]], etcd: {} }, {}, '', /ipam\.etcd\.endpoints/],
    ['bad blockSize', { ranges: [[{ subnet: '10.1.0.0/24' }]], blockSize: 40 }, {}, '', /ipam\.blockSize/],
    ['route without dst', { ranges: [[{ subnet: '10.1.0.0/24' }]], routes: [{ gw: '10.1.0.1' }] }, {}, '', /ipam\.routes\[0\]\.dst/],
    [
      'etcd endpoint that is not a URL',
      { ranges: [[{ subnet: '10.1.0.0/24' }]], etcd: { endpoints: ['not a url'] } },
      {},
      '',
      /ipam\.etcd\.endpoints\[0\].*"not a url".*not an endpoint URL/,
    ],
    [
      'etcd endpoint with a path',
      { ranges: [[{ subnet: '10.1.0.0/24' }]], etcd: { endpoints: ['127.0.0.1:2379', 'http://h:2379/v3'] } },
      {},
      '',
      /ipam\.etcd\.endpoints\[1\].*without a path/,
    ],
    [
      'etcd endpoint of another scheme',
      { ranges: [[{ subnet: '10.1.0.0/24' }]], etcd: { endpoints: ['ftp://h:2379'] } },
      {},
      '',
      /ipam\.etcd\.endpoints\[0\].*only http and https/,
    ],
    [
      'etcd unix endpoint without a path',
      { ranges: [[{ subnet: '10.1.0.0/24' }]], etcd: { endpoints: ['unix:'] } },
      {},
      '',
      /ipam\.etcd\.endpoints\[0\].*unix socket/,
    ],
    [
      'etcd transport unknown',
      { ranges: [[{ subnet: '10.1.0.0/24' }]], etcd: { endpoints: ['127.0.0.1:2379'], transport: 'websocket' } },
      {},
      '',
      /ipam\.etcd\.transport/,
    ],
    ['etcd endpoint without a host', { ranges: [[{ subnet: '10.1.0.0/24' }]], etcd: { endpoints: ['http://:2379'] } }, {}, '', /ipam\.etcd\.endpoints\[0\]/],
  ];
  for (const [name, ipam, extra, cniArgs, re] of cases) {
    it(`code 7 naming the field: ${name}`, () => {
      const e = errorOf(ipam, extra, cniArgs);
      expect(e.code).toBe(7);
      expect(text(e)).toMatch(re);
    });
  }
});

describe('etcd transport', () => {
  const transport = (etcd: Record<string, unknown>) =>
    parseIpamConfig(conf({ ranges: [[{ subnet: '10.1.0.0/24' }]], etcd: { endpoints: ['127.0.0.1:2379'], ...etcd } })).etcd?.transport;
  it('is the JSON gateway unless the etcd3 client (grpc) is asked for', () => {
    expect(transport({})).toBe('http');
    expect(transport({ transport: 'http' })).toBe('http');
    expect(transport({ transport: 'grpc' })).toBe('grpc');
  });
});

describe('etcd endpoints', () => {
  const eps = (endpoints: unknown) => parseIpamConfig(conf({ ranges: [[{ subnet: '10.1.0.0/24' }]], etcd: { endpoints } })).etcd?.endpoints;
  it('accepts host:port, http(s)://host:port, IPv6 literals and a comma list', () => {
    expect(eps(['127.0.0.1:2379', 'http://etcd-0.etcd:2379', 'https://[::1]:2379/', 'localhost'])).toHaveLength(4);
    // gRPC unix socket targets, as the agent and chaos tests use
    expect(eps(['unix:/tmp/x/etcd:2379', 'unix:///run/etcd.sock', 'unix:etcd:2379'])).toHaveLength(3);
    expect(eps('10.0.0.1:2379,10.0.0.2:2379')).toEqual(['10.0.0.1:2379', '10.0.0.2:2379']);
  });
  it('credentials in an endpoint, with or without a scheme: code 7, the value not echoed', () => {
    for (const ep of ['http://u:hunter2@h:2379', 'u:hunter2@h:2379']) {
      const e = errorOf({ ranges: [[{ subnet: '10.1.0.0/24' }]], etcd: { endpoints: [ep] } });
      expect(e.code).toBe(7);
      expect(text(e)).toMatch(/endpoints\[0\].*credentials/);
      expect(text(e)).not.toContain('hunter2');
    }
  });
});

describe('CNI_ARGS, read as host-local reads it (libcni LoadArgs)', () => {
  const base = { ranges: [[{ subnet: '10.1.0.0/24' }]] };
  const codeOf = (cniArgs: string, ignoreRequested = false): number | undefined => {
    try {
      parseIpamConfig(conf(base), { cniArgs, ignoreRequested });
    } catch (e) {
      if (e instanceof CniError) return e.code;
      throw e;
    }
    return undefined;
  };
  it.each([
    ['a segment without "="', 'IgnoreUnknown=1;garbage'],
    ['IgnoreUnknown not a boolean', 'IgnoreUnknown=maybe;IP=10.1.0.5'],
    ['an unknown key without IgnoreUnknown', 'K8S_POD_NAME=p'],
  ])('%s: code 4 on every verb', (_n, args) => {
    expect(codeOf(args)).toBe(4);
    expect(codeOf(args, true)).toBe(4);
  });
  it('IgnoreUnknown=1 ignores unknown keys; IP= is the requested address', () => {
    expect(codeOf('IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.1.0.5')).toBeUndefined();
    expect(codeOf('IgnoreUnknown=true;K8S_POD_NAME=p')).toBeUndefined();
    expect(formatIP(parseIpamConfig(conf(base), { cniArgs: 'IgnoreUnknown=1;IP=10.1.0.5' }).requested[0]!.ip)).toBe('10.1.0.5');
  });
});
