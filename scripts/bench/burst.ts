// npm run bench:burst [-- --pods N] [-- --rounds R] [-- --json]      (root)
//
// A burst of pods on one node as a resident process serves it: N (default 50) concurrent
// bridge ADDs, then N concurrent DELs, in ONE process through strand-bridge's pluginMain
// with strand-ipam in-process (test/helpers/burst.ts, from source), against the Go
// reference's N concurrent processes (bridge + host-local). Rounds alternate which goes
// first. Both use tmpfs for IPAM data, so neither pays for this machine's disk.
//
// For strand it also reports the event-loop delay during each phase (netlink round trips
// run on addon threads; the loop must keep turning) and, to show how much of DEL is the
// kernel's own serialised work (veth deletion under the RTNL lock), the wall time of
// deleting N veth pairs through netlink alone: concurrently (one socket each, as the
// burst does) and one after another.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Netns } from '../../lib/netlink/netns.ts';
import * as rtnl from '../../lib/netlink/rtnl.ts';
import type { BurstReport, BurstSpec, LoopDelay } from '../../test/helpers/burst.ts';
import { benchNamespaces, cleanupMeasured, emitBenchJson, fmtMs, machine, median, nowMs, ratio, runMeasured } from './lib.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = join(root, 'dist', 'bin');
const REF = '/usr/lib/cni';

interface Side {
  add: number[];
  del: number[];
}

/** One strand round: a fresh process in the node namespace (warm-up call first, untimed). */
function strandRound(nodeNs: string, pods: string[], warm: string, dataDir: string, bridge: string, tag: string): BurstReport {
  const spec: BurstSpec = {
    plugin: 'strand-bridge',
    conf: {
      cniVersion: '1.0.0',
      name: 'burst-strand',
      type: 'strand-bridge',
      bridge,
      isGateway: true,
      ipam: { type: 'strand-ipam', dataDir, ranges: [[{ subnet: '10.73.0.0/24' }]] },
    },
    netns: pods.map((p) => `/run/netns/${p}`),
    cniPath: DIST,
    idPrefix: `burst-${tag}`,
    commands: ['ADD', 'DEL'],
    controlMs: 200,
    warmupNetns: `/run/netns/${warm}`,
  };
  const out = execFileSync('nsenter', [`--net=/run/netns/${nodeNs}`, '--', process.execPath, join(root, 'test/helpers/burst.ts'), JSON.stringify(spec)], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const report = JSON.parse(out) as BurstReport;
  for (const p of report.phases) {
    const bad = p.calls.find((c) => c.code !== 0);
    if (bad) throw new Error(`strand ${p.command} failed: ${bad.stdout} ${bad.stderr}`);
  }
  return report;
}

/** One reference round: N processes at once per phase, as a runtime starts them. */
async function referenceRound(nodeNs: string, pods: string[], dataDir: string, bridge: string, tag: string): Promise<{ add: number; del: number }> {
  const conf = JSON.stringify({
    cniVersion: '1.0.0',
    name: 'burst-ref',
    type: 'bridge',
    bridge,
    isGateway: true,
    ipam: { type: 'host-local', dataDir, ranges: [[{ subnet: '10.74.0.0/24' }]] },
  });
  const phase = async (command: 'ADD' | 'DEL'): Promise<number> => {
    const t0 = nowMs();
    const runs = await Promise.all(
      pods.map((pod, i) =>
        runMeasured('nsenter', [`--net=/run/netns/${nodeNs}`, '--', join(REF, 'bridge')], {
          env: {
            PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
            CNI_COMMAND: command,
            CNI_CONTAINERID: `burst-${tag}-${i}`,
            CNI_NETNS: `/run/netns/${pod}`,
            CNI_IFNAME: 'eth0',
            CNI_PATH: REF,
          },
          input: conf,
          timeoutMs: 120_000,
        }),
      ),
    );
    const wall = nowMs() - t0;
    const bad = runs.find((r) => r.code !== 0);
    if (bad) throw new Error(`reference ${command} failed: ${bad.stdout} ${bad.stderr}`);
    return wall;
  };
  return { add: await phase('ADD'), del: await phase('DEL') };
}

/** Wall time of deleting N veth pairs (host end in the node, peer in a pod) through netlink only. */
async function kernelDelete(nodeNs: string, pods: string[], concurrent: boolean): Promise<number> {
  const node = pods.map(() => Netns.open(`/run/netns/${nodeNs}`));
  const podNs = pods.map((p) => Netns.open(`/run/netns/${p}`));
  try {
    await Promise.all(
      node.map((h, i) => rtnl.newLink(h, { name: `kv${i}`, up: true, info: { kind: 'veth', peer: { name: 'eth0', netns: podNs[i]!, up: true } } })),
    );
    const t0 = nowMs();
    if (concurrent) await Promise.all(node.map((h, i) => rtnl.delLink(h, `kv${i}`)));
    else for (const [i, h] of node.entries()) await rtnl.delLink(h, `kv${i}`);
    return nowMs() - t0;
  } finally {
    for (const h of [...node, ...podNs]) h.close();
  }
}

const worst = (loops: LoopDelay[]): LoopDelay => loops.reduce((a, b) => (b.max > a.max ? b : a));

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { pods: { type: 'string' }, rounds: { type: 'string' }, json: { type: 'boolean' } }, strict: true });
  const n = Number(values.pods ?? 50);
  const rounds = Number(values.rounds ?? 3);
  if (!Number.isInteger(n) || n < 1 || n > 200) throw new Error('--pods must be 1..200');
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be >= 1');
  if (process.getuid?.() !== 0) throw new Error('bench:burst needs root (network namespaces)');

  const p = `bb${randomBytes(2).toString('hex')}`;
  const nodeNs = `${p}-node`;
  const warm = `${p}-warm`;
  const pods = Array.from({ length: n }, (_, i) => `${p}-p${i}`);
  const namespaces = benchNamespaces();
  const shm = mkdtempSync(`/dev/shm/${p}-`);
  const start = machine();
  const strand: Side & { loopAdd: LoopDelay[]; loopDel: LoopDelay[]; control: LoopDelay[] } = { add: [], del: [], loopAdd: [], loopDel: [], control: [] };
  const reference: Side = { add: [], del: [] };
  const floor = { concurrent: [] as number[], sequential: [] as number[] };
  try {
    for (const ns of [nodeNs, warm, ...pods]) namespaces.add(ns);
    for (let r = 0; r <= rounds; r++) {
      const strandFirst = r % 2 === 0;
      for (const who of strandFirst ? ['strand', 'reference'] : ['reference', 'strand']) {
        if (who === 'strand') {
          const rep = strandRound(nodeNs, pods, warm, join(shm, 'strand'), `${p}s`, `${r}`);
          if (r === 0) continue; // warm-up round (page cache, bridge creation)
          strand.add.push(rep.phases[0]!.wallMs);
          strand.del.push(rep.phases[1]!.wallMs);
          strand.loopAdd.push(rep.phases[0]!.loop);
          strand.loopDel.push(rep.phases[1]!.loop);
          strand.control.push(rep.control);
        } else {
          const rep = await referenceRound(nodeNs, pods, join(shm, 'ref'), `${p}r`, `${r}`);
          if (r === 0) continue;
          reference.add.push(rep.add);
          reference.del.push(rep.del);
        }
      }
      if (r === 0) continue;
      floor.concurrent.push(await kernelDelete(nodeNs, pods, true));
      floor.sequential.push(await kernelDelete(nodeNs, pods, false));
      process.stderr.write(
        `round ${r}/${rounds}: strand ADD ${fmtMs(strand.add.at(-1)!)} DEL ${fmtMs(strand.del.at(-1)!)} ms; reference ADD ${fmtMs(reference.add.at(-1)!)} DEL ${fmtMs(reference.del.at(-1)!)} ms; veth deletion alone ${fmtMs(floor.concurrent.at(-1)!)} ms concurrent, ${fmtMs(floor.sequential.at(-1)!)} ms one by one\n`,
      );
    }
    const med = {
      strandAdd: median(strand.add),
      strandDel: median(strand.del),
      refAdd: median(reference.add),
      refDel: median(reference.del),
      floorConcurrent: median(floor.concurrent),
      floorSequential: median(floor.sequential),
    };
    const result = {
      bench: 'burst',
      pods: n,
      rounds,
      machine: start,
      loadavgAfter: machine().loadavg,
      strand: {
        label: 'strand-bridge + strand-ipam in one process (pluginMain, in-process IPAM)',
        addPhaseWallMs: +med.strandAdd.toFixed(1),
        delPhaseWallMs: +med.strandDel.toFixed(1),
        perRound: { addWallMs: strand.add.map((x) => +x.toFixed(1)), delWallMs: strand.del.map((x) => +x.toFixed(1)) },
        loopDelayMs: { add: strand.loopAdd, del: strand.loopDel, idleControl: strand.control },
      },
      reference: {
        label: `bridge + host-local (reference), ${n} processes at once`,
        addPhaseWallMs: +med.refAdd.toFixed(1),
        delPhaseWallMs: +med.refDel.toFixed(1),
        perRound: { addWallMs: reference.add.map((x) => +x.toFixed(1)), delWallMs: reference.del.map((x) => +x.toFixed(1)) },
      },
      vethDeletionOnly: {
        concurrentWallMs: +med.floorConcurrent.toFixed(1),
        sequentialWallMs: +med.floorSequential.toFixed(1),
        /** The share of strand's DEL phase that is the kernel deleting the veths. */
        shareOfStrandDel: ratio(med.floorConcurrent, med.strandDel),
        /** 1.0: concurrency gains nothing, the kernel does one deletion at a time. */
        concurrentOverSequential: ratio(med.floorConcurrent, med.floorSequential),
      },
      ratios: { addPhaseWall: ratio(med.strandAdd, med.refAdd), delPhaseWall: ratio(med.strandDel, med.refDel) },
    };
    emitBenchJson(result);
    const wa = worst(strand.loopAdd);
    const wd = worst(strand.loopDel);
    const wc = worst(strand.control);
    process.stdout.write(
      [
        `bench:burst  ${n} concurrent ADDs then ${n} concurrent DELs on one node, ${rounds} rounds (median shown), ${start.cpus} CPUs, load ${start.loadavg.join(' ')} -> ${result.loadavgAfter.join(' ')}`,
        `  strand, one process:      ADD phase ${fmtMs(med.strandAdd)} ms, DEL phase ${fmtMs(med.strandDel)} ms`,
        `  reference, ${n} processes: ADD phase ${fmtMs(med.refAdd)} ms, DEL phase ${fmtMs(med.refDel)} ms`,
        `  ratio strand/reference: ADD ${result.ratios.addPhaseWall}, DEL ${result.ratios.delPhaseWall}`,
        `  strand event-loop delay, worst round: ADD max ${fmtMs(wa.max)} p99 ${fmtMs(wa.p99)} p50 ${fmtMs(wa.p50)} ms; DEL max ${fmtMs(wd.max)} p99 ${fmtMs(wd.p99)} p50 ${fmtMs(wd.p50)} ms (idle loop, same load: max ${fmtMs(wc.max)} ms)`,
        `  deleting ${n} veth pairs through netlink alone: ${fmtMs(med.floorConcurrent)} ms concurrently, ${fmtMs(med.floorSequential)} ms one by one; that is ${Math.round(result.vethDeletionOnly.shareOfStrandDel * 100)}% of strand's DEL phase`,
        '',
      ].join('\n'),
    );
    if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    namespaces.remove();
    rmSync(shm, { recursive: true, force: true });
    cleanupMeasured();
  }
}

await main();
