// strand's `loopback` against the reference loopback (Debian's containernetworking-plugins
// 1.1.1, spec versions up to 1.0.0), each on its own fresh pod namespace whose lo is
// down, as a runtime leaves it: the same kernel state after ADD and DEL, the same
// results, CHECK and DEL semantics; then what only strand speaks (1.1.0: STATUS, GC).
//
// One documented difference: for configs older than 1.0.0 the reference prints its
// result in the 1.0.0 shape under the older cniVersion label (no `ip4`/`ip6` for 0.1.0
// and 0.2.0, no `ips[].version` for 0.3.x, upstream still builds it that way); strand
// prints each version's own format. So for those versions the reference's output is
// read as 1.0.0 and converted before comparing.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { formatResultJson, parseResult } from '../../../lib/cni/convert.ts';
import { ip, ipJson, NetnsSet, nsExec } from '../../helpers/netns.ts';
import { binDir, refBinDir, runPlugin, type PluginRun } from '../../helpers/run-plugin.ts';

const STRAND = join(binDir, 'loopback');
const REF = join(refBinDir, 'loopback');
const REF_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0'] as const;

let ns: NetnsSet | undefined;

beforeAll(() => {
  for (const f of [STRAND, REF]) if (!existsSync(f)) throw new Error(`missing ${f}: run scripts/build.sh / scripts/setup.sh`);
});

afterEach(() => {
  ns?.cleanup();
  ns = undefined;
});

/** A pod namespace with lo down (NetnsSet brings it up). */
function freshPod(set: NetnsSet, short: string): string {
  const name = set.add(short);
  ip(['link', 'set', 'lo', 'down'], { ns: name });
  return name;
}

function run(bin: string, command: string, pod: string | undefined, conf: object, ifName = 'lo'): Promise<PluginRun> {
  return runPlugin(bin, { command, containerId: 'lo-test', ...(pod === undefined ? {} : { netns: `/run/netns/${pod}` }), ifName }, conf);
}

function ok(r: PluginRun, what: string): unknown {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${r.stdout} ${r.stderr}`);
  return r.json;
}

interface LoState {
  up: boolean;
  addrs: string[];
}

function loState(pod: string): LoState {
  const [lo] = ipJson<Array<{ flags: string[]; addr_info: Array<{ local: string; prefixlen: number }> }>>(['addr', 'show', 'lo'], { ns: pod });
  return { up: lo!.flags.includes('UP'), addrs: lo!.addr_info.map((a) => `${a.local}/${a.prefixlen}`).sort() };
}

const conf = (v: string, extra: object = {}) => ({ cniVersion: v, name: 'cni-loopback', type: 'loopback', ...extra });

/** The reference's result as the spec formats it for `v` (see the header). */
function refAsSpec(json: unknown, v: string): unknown {
  const r = parseResult({ ...(json as object), cniVersion: '1.0.0' }, '1.0.0');
  return JSON.parse(formatResultJson({ ...r, cniVersion: v }, v));
}

describe('loopback against the reference loopback', () => {
  it.each(REF_VERSIONS)(
    '%s: ADD brings lo up with the same addresses and result; CHECK passes; DEL takes lo down; DEL again and without a netns succeed',
    async (v) => {
      ns = new NetnsSet();
      const sides: Record<string, { add: unknown; afterAdd: LoState; afterDel: LoState }> = {};
      for (const [tag, bin] of [
        ['ref', REF],
        ['strand', STRAND],
      ] as const) {
        const pod = freshPod(ns, tag);
        expect(loState(pod).up).toBe(false);
        const add = ok(await run(bin, 'ADD', pod, conf(v)), `${tag} ADD`);
        const afterAdd = loState(pod);
        if (v !== '0.1.0' && v !== '0.2.0' && v !== '0.3.0' && v !== '0.3.1') ok(await run(bin, 'CHECK', pod, conf(v)), `${tag} CHECK`);
        ok(await run(bin, 'DEL', pod, conf(v)), `${tag} DEL`);
        const afterDel = loState(pod);
        ok(await run(bin, 'DEL', pod, conf(v)), `${tag} DEL again`);
        ok(await run(bin, 'DEL', undefined, conf(v)), `${tag} DEL without CNI_NETNS`);
        sides[tag] = { add: add && JSON.parse(JSON.stringify(add).replaceAll(`/run/netns/${pod}`, '<pod>')), afterAdd, afterDel };
      }
      const ref = sides['ref']!;
      const ours = sides['strand']!;
      expect(ours.afterAdd).toEqual({ up: true, addrs: ['127.0.0.1/8', '::1/128'] });
      expect(ours.afterAdd).toEqual(ref.afterAdd);
      expect(ours.afterDel).toEqual(ref.afterDel);
      expect(ours.afterDel.up).toBe(false);
      expect(ours.add).toEqual(v === '1.0.0' ? stripEmptyDns(ref.add) : refAsSpec(ref.add, v));
    },
  );

  it('a prevResult is passed on unchanged (chained after another plugin)', async () => {
    ns = new NetnsSet();
    const prevResult = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: '/x' }], ips: [{ address: '10.9.0.5/24', interface: 0 }] };
    const outs = [];
    for (const [tag, bin] of [
      ['ref', REF],
      ['strand', STRAND],
    ] as const) {
      const pod = freshPod(ns, tag);
      outs.push(stripEmptyDns(ok(await run(bin, 'ADD', pod, conf('1.0.0', { prevResult })), tag)));
      expect(loState(pod).up).toBe(true);
    }
    expect(outs[1]).toEqual(prevResult);
    expect(outs[1]).toEqual(outs[0]);
  });

  it('CNI_IFNAME is ignored: lo is brought up whatever it says', async () => {
    ns = new NetnsSet();
    for (const [tag, bin] of [
      ['ref', REF],
      ['strand', STRAND],
    ] as const) {
      const pod = freshPod(ns, tag);
      ok(await run(bin, 'ADD', pod, conf('1.0.0'), 'eth0'), tag);
      expect(loState(pod).up, tag).toBe(true);
    }
  });

  it('CHECK of a lo that is down fails on both; a non-loopback address on lo fails ADD on both; a missing netns fails ADD (strand: code 4)', async () => {
    ns = new NetnsSet();
    for (const [tag, bin] of [
      ['ref', REF],
      ['strand', STRAND],
    ] as const) {
      const pod = freshPod(ns, tag);
      const check = await run(bin, 'CHECK', pod, conf('1.0.0'));
      expect(check.code, tag).toBe(1);
      expect(check.json.msg).toBe('loopback interface is down');
      if (bin === STRAND) expect(check.json.code).toBe(105);
      ip(['addr', 'add', '192.0.2.9/32', 'dev', 'lo'], { ns: pod });
      const add = await run(bin, 'ADD', pod, conf('1.0.0'));
      expect(add.code, tag).toBe(1);
      expect(add.json.msg).toContain('loopback interface found with non-loopback address');
      const missing = await run(bin, 'ADD', `${ns.prefix}-nope`, conf('1.0.0'));
      expect(missing.code, tag).toBe(1);
      if (bin === STRAND) expect(missing.json.code).toBe(4);
    }
  });

  it('strand: DEL of a namespace that is gone succeeds; a failed ADD leaves lo as it was (down)', async () => {
    ns = new NetnsSet();
    const pod = freshPod(ns, 'x');
    ip(['addr', 'add', '192.0.2.9/32', 'dev', 'lo'], { ns: pod });
    expect((await run(STRAND, 'ADD', pod, conf('1.0.0'))).code).toBe(1);
    expect(loState(pod).up).toBe(false);
    ok(await run(STRAND, 'DEL', `${ns.prefix}-gone`, conf('1.0.0')), 'DEL of a missing netns');
  });
});

describe('loopback, what only strand speaks', () => {
  it('1.1.0: ADD, CHECK, STATUS, GC, DEL; VERSION lists every version', async () => {
    ns = new NetnsSet();
    const pod = freshPod(ns, 'v');
    const add = ok(await run(STRAND, 'ADD', pod, conf('1.1.0')), 'ADD');
    expect(add).toEqual({
      cniVersion: '1.1.0',
      interfaces: [{ name: 'lo', mac: '00:00:00:00:00:00', sandbox: `/run/netns/${pod}` }],
      ips: [
        { interface: 0, address: '127.0.0.1/8' },
        { interface: 0, address: '::1/128' },
      ],
    });
    ok(await run(STRAND, 'CHECK', pod, conf('1.1.0')), 'CHECK');
    ok(await runPlugin(STRAND, { command: 'STATUS' }, conf('1.1.0')), 'STATUS');
    ok(await runPlugin(STRAND, { command: 'GC' }, conf('1.1.0', { 'cni.dev/valid-attachments': [] })), 'GC');
    expect(loState(pod).up, 'GC leaves pods alone').toBe(true);
    ok(await run(STRAND, 'DEL', pod, conf('1.1.0')), 'DEL');
    const version = ok(await runPlugin(STRAND, { command: 'VERSION' }, {}), 'VERSION') as { supportedVersions: string[] };
    expect(version.supportedVersions).toEqual([...REF_VERSIONS, '1.1.0']);
  });

  it('IPv6 disabled in the pod: only the IPv4 address', async () => {
    ns = new NetnsSet();
    const pod = freshPod(ns, 's');
    for (const k of ['all', 'default', 'lo']) nsExec(pod, 'sysctl', ['-q', '-w', `net.ipv6.conf.${k}.disable_ipv6=1`]);
    const add = ok(await run(STRAND, 'ADD', pod, conf('1.0.0')), 'ADD') as { ips: unknown[] };
    expect(add.ips).toEqual([{ interface: 0, address: '127.0.0.1/8' }]);
  });
});

function stripEmptyDns(r: unknown): unknown {
  const c = structuredClone(r) as { dns?: object };
  if (c.dns && Object.keys(c.dns).length === 0) delete c.dns;
  return c;
}
