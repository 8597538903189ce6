// The resident path under load (issue #13 item 6): 50 concurrent bridge ADDs, then 50
// concurrent DELs, in one process through pluginMain (as the daemon runs them), with
// strand-ipam in-process. Netlink round trips run off the JavaScript thread, so the event
// loop keeps turning while the kernel serialises veth creation and deletion under its
// RTNL lock. Before, each round trip ran on the loop: the 1 ms delay monitor did not fire
// once during a whole 50-DEL phase (1.2-1.6 s) or 50-ADD phase (0.5-0.6 s).
//
// The bounds, per phase, from perf_hooks.monitorEventLoopDelay (1 ms resolution):
//   - at least one turn per 20 ms of the phase on average, and a median delay <= 3 ms:
//     the loop turns every millisecond or so throughout (a blocking veth deletion alone
//     is 14-31 ms, and the old code gave no turn at all);
//   - 90th percentile <= 25 ms: the 2 CPUs are shared with the kernel threads doing the
//     work (and the machine's other load); measured 1-14 ms at load 6-18;
//   - maximum <= 500 ms. Not "a few ms": on this shared 2-core machine (load 6-18 from
//     other work) an idle Node loop alone showed maxima of 45-125 ms, and the burst's
//     maxima ranged 4-170 ms (quiet: ADD 10 ms, DEL 4 ms). A loop held by the kernel is
//     held for the whole phase, far above the bound.
// The IPAM data lives on tmpfs: the local store writes and renames synchronously, which on
// this machine's loaded disk alone held the loop for up to 115 ms of a 370 ms ADD phase;
// that is the store's business, not what this test measures.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { BurstReport, BurstSpec } from '../../helpers/burst.ts';
import { ipJson } from '../../helpers/netns.ts';
import { binDir, repoRoot } from '../../helpers/run-plugin.ts';
import { BridgeEnv, requireBinaries } from './harness.ts';

const N = 50;

let env: BridgeEnv | undefined;
let shm: string | undefined;
beforeAll(() => requireBinaries());
afterEach(() => {
  env?.cleanup();
  env = undefined;
  if (shm) rmSync(shm, { recursive: true, force: true });
  shm = undefined;
});

function expectResponsive(report: BurstReport, what: string): void {
  const p = report.phases[0]!;
  const why = `${what}: ${JSON.stringify({ wallMs: Math.round(p.wallMs), loop: p.loop, control: report.control })}`;
  expect(p.loop.samples, why).toBeGreaterThanOrEqual(p.wallMs / 20);
  expect(p.loop.p50, why).toBeLessThanOrEqual(3);
  expect(p.loop.p90, why).toBeLessThanOrEqual(25);
  expect(p.loop.max, why).toBeLessThanOrEqual(500);
}

function burst(hostNs: string, spec: BurstSpec): BurstReport {
  const out = execFileSync('nsenter', [`--net=/run/netns/${hostNs}`, '--', process.execPath, join(repoRoot, 'test/helpers/burst.ts'), JSON.stringify(spec)], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    timeout: 300_000,
  });
  return JSON.parse(out) as BurstReport;
}

describe('strand-bridge in-process burst', () => {
  it(`${N} concurrent ADDs, then ${N} concurrent DELs: the event loop is never held, nothing leaks`, async () => {
    const e = new BridgeEnv();
    env = e;
    const host = e.ns.add('host');
    const pods = Array.from({ length: N }, (_, i) => e.ns.add(`p${i}`));
    const warmup = e.ns.add('warm');
    const dataDir = mkdtempSync(`/dev/shm/${e.prefix}-ipam-`);
    shm = dataDir;
    const spec = (commands: BurstSpec['commands']): BurstSpec => ({
      plugin: 'strand-bridge',
      conf: e.conf('1.1.0', { isGateway: true }, { dataDir }),
      netns: pods.map((p) => e.ns.path(p)),
      cniPath: binDir,
      idPrefix: `${e.prefix}-c`,
      commands,
      controlMs: 300,
      warmupNetns: e.ns.path(warmup),
    });

    const add = burst(host, spec(['ADD']));
    const a = add.phases[0]!;
    for (const c of a.calls) expect(c.code, c.stdout + c.stderr).toBe(0);
    const addrs = a.calls.map((c) => (JSON.parse(c.stdout) as { ips: Array<{ address: string }> }).ips[0]!.address);
    expect(new Set(addrs).size).toBe(N);
    const ports = ipJson<Array<{ master?: string }>>(['link', 'show'], { ns: host }).filter((l) => l.master === e.bridge);
    expect(ports).toHaveLength(N);
    expectResponsive(add, 'ADD');

    const del = burst(host, spec(['DEL']));
    const d = del.phases[0]!;
    for (const c of d.calls) expect(c.code, c.stdout + c.stderr).toBe(0);
    expect(
      ipJson<Array<{ ifname: string }>>(['link', 'show'], { ns: host })
        .map((l) => l.ifname)
        .sort(),
    ).toEqual([e.bridge, 'lo'].sort());
    for (const p of pods) expect(ipJson<Array<{ ifname: string }>>(['link', 'show'], { ns: p }).map((l) => l.ifname)).toEqual(['lo']);
    const doc = JSON.parse(readFileSync(join(dataDir, `${e.prefix}-net`, 'strand-ipam.json'), 'utf8')) as { attachments?: Record<string, unknown> };
    expect(doc.attachments ?? {}).toEqual({});
    expectResponsive(del, 'DEL');
  });
});
