import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildCnitool, CniEnv, ok, requireStrandPlugin } from '../../helpers/cnitool.ts';
import { ip, nsExec, NetnsSet } from '../../helpers/netns.ts';
import { binDir, refBinDir } from '../../helpers/run-plugin.ts';
import { filesMentioning, globalAddrs, installRecorder, ipamConf, linkNames, resultAddrs } from './fixtures.ts';

// Every verb through the libcni driver: ADD/CHECK/DEL in each spec version libcni 1.1.2
// speaks, GC/STATUS in 1.1.0 (the driver sends them at the highest of the list's
// cniVersion/cniVersions, since Debian's libcni predates them), for each strand plugin.

const SINGLE_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0'] as const;

let netns: NetnsSet;
let env: CniEnv;

beforeAll(() => {
  buildCnitool();
});

afterEach(() => {
  netns?.cleanup();
  env?.cleanup();
});

const attach = (containerID: string) => ({ containerID, ifname: 'eth0' });

describe('driver: GC and STATUS wire format (recorder plugin)', () => {
  it('sends STATUS and GC with cni.dev/valid-attachments at the highest cniVersions entry, prunes the cache', async () => {
    netns = new NetnsSet();
    env = new CniEnv();
    const rec = installRecorder(env);
    const a = netns.add('a');
    const b = netns.add('b');
    const net = `${netns.prefix}-rec`;
    env.writeConflist(net, { cniVersion: '1.0.0', cniVersions: ['0.4.0', '1.0.0', '1.1.0'], plugins: [rec.tag(1)] });
    const opts = { path: [rec.dir] };
    ok(await env.run('add', net, netns.path(a), { ...opts, containerId: 'ctr-a' }));
    ok(await env.run('add', net, netns.path(b), { ...opts, containerId: 'ctr-b' }));
    expect(
      env
        .cachedResults(net)
        .map((c) => c.containerId)
        .sort(),
    ).toEqual(['ctr-a', 'ctr-b']);
    expect(rec.records().map((r) => r.conf.cniVersion)).toEqual(['1.0.0', '1.0.0']);

    ok(await env.run('status', net, undefined, opts));
    const [status] = rec.records().filter((r) => r.cmd === 'STATUS');
    expect(status?.conf).toMatchObject({ cniVersion: '1.1.0', name: net, type: 'recorder' });
    expect(status?.conf.prevResult).toBeUndefined();

    ok(await env.run('gc', net, undefined, { ...opts, validAttachments: [attach('ctr-a')] }));
    ok(await env.run('gc', net, undefined, opts)); // default: every cached attachment is valid
    const gcs = rec.records().filter((r) => r.cmd === 'GC');
    expect(gcs.map((r) => r.conf.cniVersion)).toEqual(['1.1.0', '1.1.0']);
    expect(gcs.map((r) => r.conf['cni.dev/valid-attachments'])).toEqual([[attach('ctr-a')], [attach('ctr-a')]]);
    expect(env.cachedResults(net).map((c) => c.containerId)).toEqual(['ctr-a']);
  });

  it('sends nothing for GC/STATUS when the list tops out below 1.1.0', async () => {
    netns = new NetnsSet();
    env = new CniEnv();
    const rec = installRecorder(env);
    const net = `${netns.prefix}-old`;
    env.writeConflist(net, { cniVersion: '1.0.0', plugins: [rec.tag(1)] });
    const st = ok(await env.run('status', net, undefined, { path: [rec.dir] }));
    expect(st).toBeUndefined();
    const gc = await env.run('gc', net, undefined, { path: [rec.dir] });
    expect(gc.code).toBe(0);
    expect(gc.stderr).toContain('GC needs 1.1.0');
    expect(rec.records()).toEqual([]);
  });

  it('reports a plugin error with its code on stdout and exit 1', async () => {
    netns = new NetnsSet();
    env = new CniEnv();
    const pod = netns.add('p');
    const net = `${netns.prefix}-bad`;
    // the reference bridge rejects a bridge name longer than 15 bytes
    env.writeConflist(net, {
      cniVersion: '1.0.0',
      plugins: [{ type: 'bridge', bridge: 'x'.repeat(20), ipam: ipamConf('host-local', env.dir('ipam'), { v4: '10.67.0.0/24' }) }],
    });
    const run = await env.run('add', net, netns.path(pod), { path: [refBinDir] });
    expect(run.code).toBe(1);
    expect(run.json).toMatchObject({ code: expect.any(Number), msg: expect.any(String) });
    expect(run.stderr).toMatch(/^cnitool: /);
  });
});

interface PluginCase {
  plugin: 'strand-bridge' | 'strand-macvlan';
  /** Plugin-specific config (everything but type and ipam). */
  conf(prefix: string): Record<string, unknown>;
  /** Set up the host namespace (e.g. the macvlan master). */
  setup?(host: string, prefix: string): void;
  /** Link names that may stay in the host namespace after DEL. */
  hostLinks(prefix: string): string[];
  /** Address to ping from the pod besides the other pod, if any. */
  gateway?: string;
}

const CASES: PluginCase[] = [
  {
    plugin: 'strand-bridge',
    conf: (p) => ({ bridge: `${p}-br`, isGateway: true }),
    hostLinks: (p) => [`${p}-br`, 'lo'],
    gateway: '10.68.0.1',
  },
  {
    plugin: 'strand-macvlan',
    conf: (p) => ({ master: `${p}-m0`, mode: 'bridge' }),
    setup: (host, p) => {
      ip(['link', 'add', `${p}-m0`, 'type', 'veth', 'peer', 'name', `${p}-m1`], { ns: host });
      ip(['link', 'set', `${p}-m0`, 'up'], { ns: host });
      ip(['link', 'set', `${p}-m1`, 'up'], { ns: host });
    },
    hostLinks: (p) => [`${p}-m0`, `${p}-m1`, 'lo'],
  },
];

for (const c of CASES) {
  describe(`${c.plugin} + strand-ipam through libcni`, () => {
    for (const version of SINGLE_VERSIONS) {
      it(`${version}: two pods ADD, reach each other, CHECK, DEL twice, nothing leaked`, async () => {
        requireStrandPlugin(c.plugin);
        requireStrandPlugin('strand-ipam');
        netns = new NetnsSet();
        env = new CniEnv();
        const host = netns.add('h');
        const pods = [netns.add('p1'), netns.add('p2')];
        c.setup?.(host, netns.prefix);
        const ipamDir = env.dir('ipam');
        const net = `${netns.prefix}-v`;
        env.writeConflist(net, {
          cniVersion: version,
          plugins: [{ type: c.plugin, ...c.conf(netns.prefix), ipam: ipamConf('strand-ipam', ipamDir, { v4: '10.68.0.0/24' }) }],
        });
        const opts = (i: number) => ({ hostNs: host, containerId: `${netns.prefix}-c${i}`, path: [binDir, refBinDir] });

        const results = [];
        for (const [i, pod] of pods.entries()) {
          const r = ok(await env.run('add', net, netns.path(pod), opts(i)));
          expect(r.cniVersion).toBe(version);
          expect(globalAddrs(pod, 'eth0')).toEqual(resultAddrs(r));
          expect(filesMentioning(ipamDir, `${netns.prefix}-c${i}`), 'IPAM record').not.toEqual([]);
          results.push(r);
        }
        const peer = resultAddrs(results[1])[0]!.split('/')[0]!;
        nsExec(pods[0]!, 'ping', ['-c', '1', '-W', '2', peer]);
        if (c.gateway) nsExec(pods[0]!, 'ping', ['-c', '1', '-W', '2', c.gateway]);

        for (const [i, pod] of pods.entries()) {
          const check = await env.run('check', net, netns.path(pod), opts(i));
          if (version >= '0.4.0') ok(check);
          else expect(check.stderr).toContain('does not support the CHECK command');
        }
        for (const [i, pod] of pods.entries()) {
          ok(await env.run('del', net, netns.path(pod), opts(i)));
          ok(await env.run('del', net, netns.path(pod), opts(i)));
          expect(linkNames(pod)).toEqual(['lo']);
          expect(filesMentioning(ipamDir, `${netns.prefix}-c${i}`)).toEqual([]);
        }
        expect(linkNames(host).sort()).toEqual(c.hostLinks(netns.prefix).sort());
        expect(env.cachedResults(net)).toEqual([]);
      });
    }

    it('1.1.0: STATUS passes, GC releases only the attachments not listed as valid', async () => {
      requireStrandPlugin(c.plugin);
      requireStrandPlugin('strand-ipam');
      netns = new NetnsSet();
      env = new CniEnv();
      const host = netns.add('h');
      const pods = [netns.add('p1'), netns.add('p2')];
      c.setup?.(host, netns.prefix);
      const ipamDir = env.dir('ipam');
      const net = `${netns.prefix}-gc`;
      env.writeConflist(net, {
        cniVersion: '1.0.0',
        cniVersions: ['1.0.0', '1.1.0'],
        // p2's namespace still exists and its attachment is seconds old, which strand-ipam's GC
        // honours by default: told to release it anyway
        plugins: [
          {
            type: c.plugin,
            ...c.conf(netns.prefix),
            ipam: { ...ipamConf('strand-ipam', ipamDir, { v4: '10.68.0.0/24' }), gcGracePeriod: 0, gcKeepLiveNetns: false },
          },
        ],
      });
      const id = (i: number) => `${netns.prefix}-c${i}`;
      const opts = (i: number) => ({ hostNs: host, containerId: id(i), path: [binDir, refBinDir] });
      for (const [i, pod] of pods.entries()) ok(await env.run('add', net, netns.path(pod), opts(i)));
      expect(filesMentioning(ipamDir, id(1))).not.toEqual([]);

      ok(await env.run('status', net, undefined, { hostNs: host, path: [binDir, refBinDir] }));
      ok(await env.run('gc', net, undefined, { hostNs: host, path: [binDir, refBinDir], validAttachments: [attach(id(0))] }));
      expect(filesMentioning(ipamDir, id(1))).toEqual([]);
      expect(filesMentioning(ipamDir, id(0))).not.toEqual([]);
      ok(await env.run('check', net, netns.path(pods[0]!), opts(0)));

      for (const [i, pod] of pods.entries()) ok(await env.run('del', net, netns.path(pod), opts(i)));
      expect(filesMentioning(ipamDir, id(0))).toEqual([]);
      expect(linkNames(host).sort()).toEqual(c.hostLinks(netns.prefix).sort());
    });

    it('1.1.0: STATUS answers code 50 when strand-ipam cannot reach its etcd', async () => {
      requireStrandPlugin(c.plugin);
      requireStrandPlugin('strand-ipam');
      netns = new NetnsSet();
      env = new CniEnv();
      const host = netns.add('h');
      c.setup?.(host, netns.prefix);
      const net = `${netns.prefix}-st`;
      // nothing listens on this port (our range is 24000-24999)
      const ipam = { type: 'strand-ipam', ranges: [[{ subnet: '10.69.0.0/24' }]], etcd: { endpoints: ['http://127.0.0.1:24999'], dialTimeout: 500 } };
      env.writeConflist(net, { cniVersion: '1.1.0', plugins: [{ type: c.plugin, ...c.conf(netns.prefix), ipam }] });
      const run = await env.run('status', net, undefined, { hostNs: host, path: [binDir, refBinDir] });
      expect(run.code).toBe(1);
      expect(run.json?.code).toBe(50);
    });
  });
}
