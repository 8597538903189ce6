// Turns a `npm run bench` result file (bench/results/<date>.json) into what the README
// shows: an SVG chart (ADD/DEL latency distributions strand vs the Go reference, IPAM
// throughput, pod churn) and a Markdown table of ratios. Plain string building, no
// dependencies.
//
//   node scripts/bench/chart.ts bench/results/<date>.json [out.svg] [out.md]
import { readFileSync, writeFileSync } from 'node:fs';
import { quantile } from './lib.ts';
import { isObject } from '../../lib/cni/json.ts';

export interface BenchEntry {
  status: 'ok' | 'failed' | 'missing';
  seconds?: number;
  result?: Record<string, unknown>;
  error?: string;
  /** Not run this time: taken from the run of this date and commit (npm run bench -- --reuse). */
  reusedFrom?: string;
}

export interface BenchRun {
  date: string;
  commit: string;
  machine: { cpus: number; cpuModel: string; loadavg: number[]; node: string };
  benches: Record<string, BenchEntry>;
}

/** A latency distribution: p50 always; the other quantiles when the bench gave them. */
export interface Dist {
  min?: number;
  p10?: number;
  p25?: number;
  p50: number;
  p75?: number;
  p90?: number;
  max?: number;
}

/** strand standalone, strand through the shim and the daemon, the Go reference. */
export type Who = 'strand' | 'daemon' | 'reference';

export interface DistRow {
  group: string;
  who: Who;
  label: string;
  dist: Dist;
}

export interface BarRow {
  group: string;
  who: Who;
  label: string;
  value: number;
  unit: string;
}

export interface Model {
  add: DistRow[];
  del: DistRow[];
  throughput: BarRow[];
  churn: BarRow[];
}

type Obj = Record<string, unknown>;
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const get = (o: unknown, ...path: string[]): unknown => path.reduce<unknown>((x, k) => (isObject(x) ? x[k] : undefined), o);

function fromSamples(xs: unknown): Dist | undefined {
  if (!Array.isArray(xs) || xs.length === 0 || !xs.every((x) => typeof x === 'number')) return undefined;
  const s = xs as number[];
  return {
    min: Math.min(...s),
    p10: quantile(s, 0.1),
    p25: quantile(s, 0.25),
    p50: quantile(s, 0.5),
    p75: quantile(s, 0.75),
    p90: quantile(s, 0.9),
    max: Math.max(...s),
  };
}

/** One side (`strand` / `reference`) of a bridge- or macvlan-shaped result. */
function sideDist(side: unknown, verb: 'add' | 'del'): Dist | undefined {
  const s = fromSamples(get(side, 'samples', verb));
  if (s) return s;
  const p50 = num(get(side, `${verb}MedianMs`)) ?? num(get(side, verb, 'p50'));
  if (p50 === undefined) return undefined;
  const d: Dist = { p50 };
  const p90 = num(get(side, `${verb}P90Ms`)) ?? num(get(side, verb, 'p90'));
  if (p90 !== undefined) d.p90 = p90;
  return d;
}

/** A bridge-style result is either {strand, reference} or {scenarios: {name: {strand, reference}}}. */
function scenarios(res: Obj, name: string): Array<[string, Obj]> {
  const sc = res['scenarios'];
  if (isObject(sc))
    return Object.entries(sc)
      .filter((e): e is [string, Obj] => isObject(e[1]))
      .map(([k, v]) => [`${name} (${k})`, v]);
  return [[name, res]];
}

const SIDES = [
  ['strand', 'strand'],
  ['daemon', 'daemon'],
  ['reference', 'reference'],
] as const;
const WHO_TEXT: Record<Who, string> = { strand: 'strand', daemon: 'strand via daemon', reference: 'reference' };

/** Pulls the chartable numbers out of whatever each bench reported. */
export function buildModel(run: BenchRun): Model {
  const m: Model = { add: [], del: [], throughput: [], churn: [] };
  const r = (name: string): Obj | undefined => (run.benches[name]?.status === 'ok' ? run.benches[name]?.result : undefined);

  for (const [bench, name] of [
    ['bridge', 'bridge'],
    ['macvlan', 'macvlan'],
    ['chain', 'chain'],
    ['churn', 'churn: bridge, 50 concurrent'],
  ] as const) {
    const res = r(bench);
    if (!res) continue;
    for (const [group, sc] of scenarios(res, name)) {
      for (const [key, who] of SIDES) {
        const side = sc[key];
        const label = `${group}: ${WHO_TEXT[who]}`;
        const a = sideDist(side, 'add');
        const d = sideDist(side, 'del');
        if (a) m.add.push({ group, who, label, dist: a });
        if (d) m.del.push({ group, who, label, dist: d });
      }
    }
  }

  const ipam = r('ipam');
  const stats = get(ipam, 'process', 'stats');
  if (Array.isArray(stats)) {
    const [ours, , ref, , viaDaemon] = stats as Obj[];
    if (num(ours?.['allocPerSec']) !== undefined)
      m.throughput.push({ group: 'one process per ADD', who: 'strand', label: 'strand-ipam (local)', value: ours!['allocPerSec'] as number, unit: '/s' });
    if (num(viaDaemon?.['allocPerSec']) !== undefined)
      m.throughput.push({
        group: 'one process per ADD',
        who: 'daemon',
        label: 'strand-ipam via daemon',
        value: viaDaemon!['allocPerSec'] as number,
        unit: '/s',
      });
    if (num(ref?.['allocPerSec']) !== undefined)
      m.throughput.push({ group: 'one process per ADD', who: 'reference', label: 'host-local', value: ref!['allocPerSec'] as number, unit: '/s' });
  }
  const etcd = get(ipam, 'etcd');
  if (Array.isArray(etcd)) {
    for (const e of etcd as Obj[]) {
      const v = num(e['allocPerSec']);
      if (v !== undefined)
        m.throughput.push({
          group: 'in-process, etcd',
          who: 'strand',
          label: String(e['label'] ?? '')
            .replace(/, in-process$/, '')
            .replace(/^etcd /, 'etcd '),
          value: v,
          unit: '/s',
        });
    }
  }

  const churn = r('churn');
  if (churn) {
    for (const [field, what] of [
      ['addPhaseWallMs', 'ADD phase wall'],
      ['delPhaseWallMs', 'DEL phase wall'],
      ['addPhaseCpuMs', 'ADD phase CPU'],
      ['delPhaseCpuMs', 'DEL phase CPU'],
    ] as const) {
      for (const [key, who] of SIDES) {
        const v = num(get(churn[key], field));
        if (v !== undefined) m.churn.push({ group: what, who, label: `${what}: ${WHO_TEXT[who]}`, value: v, unit: 'ms' });
      }
    }
  }
  return m;
}

// ---------------------------------------------------------------------------------
// SVG

const COLORS = { strand: '#2b6cb0', daemon: '#38a169', reference: '#a0a0a0' } as const;
const W = 960;
const LEFT = 320;
const RIGHT = 40;
const ROW = 22;

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(v: number): string {
  if (Number.isInteger(v) && v < 1000) return String(v);
  return v >= 1000 ? `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)}k` : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

/** Log-scale ticks 1, 2, 5, 10, ... covering [lo, hi]. */
function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const k of [1, 2, 5]) {
      const t = k * 10 ** e;
      if (t >= lo && t <= hi) out.push(t);
    }
  }
  return out;
}

function distPanel(title: string, rows: DistRow[], y0: number): { svg: string; height: number } {
  if (rows.length === 0) return { svg: '', height: 0 };
  const vals = rows.flatMap((r) => Object.values(r.dist).filter((v): v is number => typeof v === 'number' && v > 0));
  const lo = 10 ** Math.floor(Math.log10(Math.min(...vals)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...vals)));
  const x = (v: number): number => LEFT + ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (W - LEFT - RIGHT);
  const top = y0 + 28;
  const parts: string[] = [`<text x="10" y="${y0 + 16}" class="title">${esc(title)}</text>`];
  const bottom = top + rows.length * ROW;
  for (const t of logTicks(lo, hi)) {
    parts.push(`<line x1="${x(t).toFixed(1)}" y1="${top - 4}" x2="${x(t).toFixed(1)}" y2="${bottom}" class="grid"/>`);
    parts.push(`<text x="${x(t).toFixed(1)}" y="${bottom + 14}" class="tick" text-anchor="middle">${fmt(t)}</text>`);
  }
  parts.push(
    `<text x="${W - RIGHT}" y="${bottom + 28}" class="tick" text-anchor="end">ms per invocation (log scale); box p25-p75, whiskers p10-p90, dot median</text>`,
  );
  rows.forEach((r, i) => {
    const cy = top + i * ROW + ROW / 2;
    const c = COLORS[r.who];
    const d = r.dist;
    parts.push(`<text x="${LEFT - 8}" y="${cy + 4}" class="label" text-anchor="end">${esc(r.label)}</text>`);
    const wlo = d.p10 ?? d.min;
    const whi = d.p90 ?? d.max;
    if (wlo !== undefined && whi !== undefined)
      parts.push(`<line x1="${x(wlo).toFixed(1)}" y1="${cy}" x2="${x(whi).toFixed(1)}" y2="${cy}" stroke="${c}" stroke-width="1.5"/>`);
    else if (whi !== undefined)
      parts.push(`<line x1="${x(d.p50).toFixed(1)}" y1="${cy}" x2="${x(whi).toFixed(1)}" y2="${cy}" stroke="${c}" stroke-width="1.5"/>`);
    if (d.p25 !== undefined && d.p75 !== undefined) {
      parts.push(
        `<rect x="${x(d.p25).toFixed(1)}" y="${cy - 6}" width="${Math.max(1, x(d.p75) - x(d.p25)).toFixed(1)}" height="12" fill="${c}" fill-opacity="0.35" stroke="${c}"/>`,
      );
    }
    parts.push(`<circle cx="${x(d.p50).toFixed(1)}" cy="${cy}" r="4" fill="${c}"/>`);
    parts.push(`<text x="${(x(whi ?? d.p50) + 8).toFixed(1)}" y="${cy + 4}" class="value">${fmt(d.p50)} ms</text>`);
  });
  return { svg: parts.join('\n'), height: bottom + 40 - y0 };
}

function barPanel(title: string, rows: BarRow[], y0: number, axis: string): { svg: string; height: number } {
  if (rows.length === 0) return { svg: '', height: 0 };
  const max = Math.max(...rows.map((r) => r.value));
  const x = (v: number): number => LEFT + (v / max) * (W - LEFT - RIGHT - 70);
  const top = y0 + 28;
  const parts: string[] = [`<text x="10" y="${y0 + 16}" class="title">${esc(title)}</text>`];
  rows.forEach((r, i) => {
    const cy = top + i * ROW + ROW / 2;
    parts.push(`<text x="${LEFT - 8}" y="${cy + 4}" class="label" text-anchor="end">${esc(r.label)}</text>`);
    parts.push(`<rect x="${LEFT}" y="${cy - 7}" width="${Math.max(1, x(r.value) - LEFT).toFixed(1)}" height="14" fill="${COLORS[r.who]}"/>`);
    parts.push(`<text x="${(x(r.value) + 6).toFixed(1)}" y="${cy + 4}" class="value">${fmt(r.value)} ${esc(r.unit)}</text>`);
  });
  const bottom = top + rows.length * ROW;
  parts.push(`<text x="${W - RIGHT}" y="${bottom + 14}" class="tick" text-anchor="end">${esc(axis)}</text>`);
  return { svg: parts.join('\n'), height: bottom + 24 - y0 };
}

export function renderSvg(run: BenchRun, model = buildModel(run)): string {
  const panels: string[] = [];
  let y = 56;
  for (const p of [
    distPanel('ADD latency', model.add, 0),
    distPanel('DEL latency', model.del, 0),
    barPanel('IPAM throughput (allocations per second, higher is better)', model.throughput, 0, 'allocations/s'),
    barPanel(
      'Pod churn: 50 concurrent ADDs, then 50 DELs, one node (lower is better)',
      model.churn,
      0,
      'ms (median over rounds); CPU = user+system of all plugin and IPAM processes',
    ),
  ]) {
    if (!p.height) continue;
    panels.push(`<g transform="translate(0 ${y})">${p.svg}</g>`);
    y += p.height + 14;
  }
  const missing = Object.entries(run.benches)
    .filter(([, b]) => b.status !== 'ok')
    .map(([n, b]) => `${n} (${b.status})`);
  const footer = missing.length ? `not in this chart: ${missing.join(', ')}` : '';
  const h = y + 30;
  const legend =
    `<rect x="${W - 390}" y="14" width="12" height="12" fill="${COLORS.strand}"/><text x="${W - 373}" y="24" class="label">strand</text>` +
    `<rect x="${W - 310}" y="14" width="12" height="12" fill="${COLORS.daemon}"/><text x="${W - 293}" y="24" class="label">strand via daemon</text>` +
    `<rect x="${W - 170}" y="14" width="12" height="12" fill="${COLORS.reference}"/><text x="${W - 153}" y="24" class="label">Go reference</text>`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${h}" viewBox="0 0 ${W} ${h}" font-family="sans-serif">`,
    '<style>.title{font-size:14px;font-weight:bold}.label{font-size:12px}.value{font-size:11px;fill:#333}.tick{font-size:10px;fill:#666}.grid{stroke:#e5e5e5}</style>',
    '<rect width="100%" height="100%" fill="white"/>',
    `<text x="10" y="22" font-size="16" font-weight="bold">strand vs the Go reference plugins</text>`,
    `<text x="10" y="40" class="tick">${esc(`${run.date}, commit ${run.commit.slice(0, 10)}, ${run.machine.cpus} CPUs (${run.machine.cpuModel}), load ${run.machine.loadavg.join(' ')}, Node ${run.machine.node}`)}</text>`,
    legend,
    ...panels,
    `<text x="10" y="${h - 10}" class="tick">${esc(footer)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------
// Markdown table

interface Line {
  what: string;
  strand: string;
  reference: string;
  ratio: string;
  goal: string;
  /** strand through the shim and the daemon, and its ratio to the reference (issue 13's goals). */
  daemon?: string;
  daemonRatio?: string;
  daemonGoal?: string;
}

const x2 = (v: number | undefined): string => (v === undefined ? '' : v >= 100 ? v.toFixed(0) : v.toFixed(2));
const ratioText = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined || b === 0 ? '' : `${(a / b).toFixed(2)}x`);

export function tableLines(run: BenchRun): Line[] {
  const out: Line[] = [];
  const r = (name: string): Obj | undefined => (run.benches[name]?.status === 'ok' ? run.benches[name]?.result : undefined);
  const startup = r('startup');
  if (startup) {
    const s = num(startup['strandBridgeVersionMedianMs']);
    const n = num(startup['nodeMedianMs']);
    out.push({
      what: 'start-up: `strand-bridge` VERSION vs `node -e 0` (ms, median)',
      strand: x2(s),
      reference: `${x2(n)} (bare Node)`,
      ratio: ratioText(s, n),
      goal: '<= 1.25x',
    });
  }
  const nl = r('netlink');
  if (nl) {
    const a = num(nl['netlinkMedianMs']);
    const b = num(nl['ipMedianMs']);
    out.push({
      what: 'pod link set-up: strand netlink vs `ip` commands (ms, median)',
      strand: x2(a),
      reference: `${x2(b)} (ip)`,
      ratio: ratioText(a, b),
      goal: '<= 0.10x',
    });
  }
  for (const [bench, base] of [
    ['bridge', 'bridge'],
    ['macvlan', 'macvlan'],
    ['chain', 'chain: bridge + IPAM + portmap, ipMasq, hairpin'],
  ] as const) {
    const res = r(bench);
    if (!res) continue;
    for (const [name, sc] of scenarios(res, base)) {
      const etcd = name.includes('etcd');
      for (const verb of ['add', 'del'] as const) {
        const a = sideDist(sc['strand'], verb)?.p50;
        const b = sideDist(sc['reference'], verb)?.p50;
        const d = sideDist(sc['daemon'], verb)?.p50;
        out.push({
          what: `${name} ${verb.toUpperCase()} (ms, median)`,
          strand: x2(a),
          reference: x2(b),
          ratio: ratioText(a, b),
          goal: verb === 'add' && bench === 'bridge' ? '<= 1.5x' : '',
          daemon: x2(d),
          daemonRatio: ratioText(d, b),
          daemonGoal: verb === 'add' ? (etcd ? '<= 1.0x' : '<= 0.6x') : bench === 'bridge' && !etcd ? '<= 0.6x' : '',
        });
      }
      const ra = num(get(sc, 'strand', 'peakRssKb'));
      const rb = num(get(sc, 'reference', 'peakRssKb'));
      const rd = num(get(sc, 'daemon', 'peakRssKb'));
      if (ra !== undefined && rb !== undefined)
        out.push({
          what: `${name} peak RSS per call (MiB)`,
          strand: x2(ra / 1024),
          reference: x2(rb / 1024),
          ratio: ratioText(ra, rb),
          goal: '',
          daemon: rd === undefined ? '' : x2(rd / 1024),
          daemonRatio: ratioText(rd, rb),
          daemonGoal: rd === undefined ? '' : '<= 2 MiB',
        });
    }
  }
  const ipam = r('ipam');
  const stats = get(ipam, 'process', 'stats');
  if (Array.isArray(stats)) {
    const [ours, , ref, , viaDaemon] = stats as Obj[];
    const a = num(ours?.['p50ms']);
    const b = num(ref?.['p50ms']);
    const d = num(viaDaemon?.['p50ms']);
    out.push({
      what: 'IPAM ADD, one process each: strand-ipam (local) vs host-local (ms, p50)',
      strand: x2(a),
      reference: x2(b),
      ratio: ratioText(a, b),
      goal: '<= 1.5x',
      daemon: x2(d),
      daemonRatio: ratioText(d, b),
    });
  }
  const etcd = get(ipam, 'etcd');
  if (Array.isArray(etcd)) {
    const e8 = (etcd as Obj[]).find((e) => /single member, 8 nodes/.test(String(e['label'])));
    if (e8)
      out.push({
        what: 'IPAM on etcd, 8 nodes, single member (allocations/s)',
        strand: x2(num(e8['allocPerSec'])),
        reference: 'n/a',
        ratio: '',
        goal: '>= 500/s',
      });
  }
  const churn = r('churn');
  if (churn) {
    for (const [field, what] of [
      ['addPhaseWallMs', 'churn: 50 concurrent ADDs, wall (ms)'],
      ['delPhaseWallMs', 'churn: 50 concurrent DELs, wall (ms)'],
      ['addPhaseCpuMs', 'churn: CPU of 50 ADDs (ms)'],
      ['delPhaseCpuMs', 'churn: CPU of 50 DELs (ms)'],
    ] as const) {
      const a = num(get(churn, 'strand', field));
      const b = num(get(churn, 'reference', field));
      const d = num(get(churn, 'daemon', field));
      const daemonGoal = field === 'addPhaseWallMs' ? '<= 0.5x' : field === 'delPhaseWallMs' ? '<= 1.0x' : '';
      out.push({ what, strand: x2(a), reference: x2(b), ratio: ratioText(a, b), goal: '', daemon: x2(d), daemonRatio: ratioText(d, b), daemonGoal });
    }
    const floor = num(churn['kernelDelFloorMs']);
    if (floor !== undefined)
      out.push({ what: "churn: the kernel's floor, 50 veth deletions by one `ip -batch` (ms)", strand: '', reference: x2(floor), ratio: '', goal: '' });
    const dp = get(churn, 'daemonProcess');
    const cpu = num(get(dp, 'cpuMsPerRequest'));
    const rss = num(get(dp, 'rssKb'));
    if (cpu !== undefined && rss !== undefined)
      out.push({
        what: 'churn: strand daemon CPU per request (ms) / resident size (MiB)',
        strand: '',
        reference: '',
        ratio: '',
        goal: '',
        daemon: `${x2(cpu)} / ${x2(rss / 1024)}`,
      });
    const a = num(get(churn, 'strand', 'peakRssKb', 'p50'));
    const b = num(get(churn, 'reference', 'peakRssKb', 'p50'));
    const d = num(get(churn, 'daemon', 'peakRssKb', 'p50'));
    out.push({
      what: 'churn: peak RSS per invocation, plugin + IPAM (MiB, p50)',
      strand: x2(a === undefined ? a : a / 1024),
      reference: x2(b === undefined ? b : b / 1024),
      ratio: ratioText(a, b),
      goal: '',
      daemon: x2(d === undefined ? d : d / 1024),
      daemonRatio: ratioText(d, b),
      daemonGoal: '<= 2 MiB',
    });
  }
  const agent = r('agent');
  for (const mode of ['host-gw', 'vxlan']) {
    const c = num(get(agent, 'convergence', mode, 'claim', 'median'));
    if (c !== undefined)
      out.push({ what: `agent: block claim -> route on the other nodes, ${mode} (ms, median)`, strand: x2(c), reference: 'n/a', ratio: '', goal: '' });
  }
  const dp = r('datapath');
  const ratios = get(dp, 'ratios');
  if (isObject(ratios)) {
    const b = num(ratios['bridgePodVsHost_tcpRr']);
    const mv = num(ratios['macvlanPodVsHost_tcpRr']);
    if (b !== undefined)
      out.push({ what: 'datapath TCP_RR, veth+bridge pod vs host namespace', strand: '', reference: '', ratio: `${b.toFixed(2)}x`, goal: '' });
    if (mv !== undefined) out.push({ what: 'datapath TCP_RR, macvlan pod vs host namespace', strand: '', reference: '', ratio: `${mv.toFixed(2)}x`, goal: '' });
    const fl = num(ratios['flatPodVsHost_tcpRr']);
    if (fl !== undefined)
      out.push({
        what: 'datapath TCP_RR, flat mode: pod <-> pod vs host <-> host across nodes',
        strand: '',
        reference: '',
        ratio: `${fl.toFixed(2)}x`,
        goal: '',
      });
  }
  return out;
}

interface Summary {
  p50: number;
}
interface Phase {
  wall: number;
  cpu: number;
}
const PHASE_TEXT: Record<string, string> = {
  start: 'process start to the ADD handler (Node start-up, snapshot, stdin, config validation)',
  bridge: 'bridge ensured (netlink; sysctls on first use)',
  veth: 'veth pair created, pod end in the pod netns',
  ipam: 'IPAM delegate (exec of the reference host-local, as in the table above)',
  pod: 'addresses and routes in the pod',
  gateway: 'gateway address on the bridge, forwarding',
  final: 'bridge port up and attributes read back, result built',
};

/** "Where the time goes" of a strand-bridge ADD, from bench:bridge's breakdown (empty when absent). */
function breakdownLines(run: BenchRun): string[] {
  const b = run.benches['bridge']?.result?.['breakdown'] as
    | { startupMs?: Summary; hostLocalAddMs?: Summary; strandPhasesMs?: Record<string, Phase> }
    | undefined;
  if (!b?.strandPhasesMs) return [];
  const nodeMs = run.benches['startup']?.result?.['nodeMedianMs'];
  const scenarios = run.benches['bridge']?.result?.['scenarios'] as Record<string, { reference?: { add?: Summary } }> | undefined;
  const refAdd = scenarios?.['isGateway']?.reference?.add?.p50;
  const phases = Object.entries(b.strandPhasesMs);
  const total = phases.reduce((t, [, p]) => t + p.wall, 0);
  const f = (x: number): string => x.toFixed(1);
  return [
    '### Where a strand-bridge ADD spends its time',
    '',
    `Medians of strand's own phase marks (debug log of cni/bridge/add.ts), isGateway scenario; ${f(total)} ms from process start to the result.` +
      (b.startupMs ? ` For scale: the whole process start of \`strand-bridge\` for VERSION is ${f(b.startupMs.p50)} ms` : '') +
      (b.hostLocalAddMs ? `, and host-local run alone takes ${f(b.hostLocalAddMs.p50)} ms.` : '.') +
      (typeof nodeMs === 'number' ? ` A bare \`node -e 0\` of the pinned Node takes ${f(nodeMs)} ms (bench:startup)` : '') +
      (typeof nodeMs === 'number' && refAdd !== undefined ? `, the reference bridge's whole ADD ${f(refAdd)} ms.` : typeof nodeMs === 'number' ? '.' : ''),
    '',
    '| phase | wall (ms) | CPU (ms) |',
    '|---|---:|---:|',
    ...phases.map(([k, p]) => `| ${PHASE_TEXT[k] ?? k} | ${f(p.wall)} | ${f(p.cpu)} |`),
    '',
  ];
}

export function renderMarkdown(run: BenchRun, svgName: string): string {
  const lines = tableLines(run);
  const status = Object.entries(run.benches)
    .map(
      ([n, b]) =>
        `${n}: ${b.status}${b.seconds !== undefined ? ` (${b.seconds.toFixed(0)} s)` : ''}${b.reusedFrom ? ` (reused from ${b.reusedFrom})` : ''}${b.error ? ` — ${b.error.split('\n')[0]!.slice(0, 160)}` : ''}`,
    )
    .join('; ');
  return [
    `<!-- written by npm run bench (scripts/bench/all.ts); do not edit -->`,
    `Measured ${run.date} at commit \`${run.commit.slice(0, 10)}\` on ${run.machine.cpus} CPUs (${run.machine.cpuModel}), load average ${run.machine.loadavg.join(' ')} at start, Node ${run.machine.node}. Strand and the reference run alternately in the same process, so ratios are more trustworthy than absolute times on a shared machine.`,
    '',
    `![strand vs reference](${svgName})`,
    '',
    '| measurement | strand | reference | strand / reference | goal | strand via daemon | daemon / reference | goal (issue 13) |',
    '|---|---:|---:|---:|---|---:|---:|---|',
    ...lines.map(
      (l) => `| ${l.what} | ${l.strand} | ${l.reference} | ${l.ratio} | ${l.goal} | ${l.daemon ?? ''} | ${l.daemonRatio ?? ''} | ${l.daemonGoal ?? ''} |`,
    ),
    '',
    ...breakdownLines(run),
    `Benchmarks: ${status}.`,
    '',
  ].join('\n');
}

function cli(): void {
  const [input, svgOut, mdOut] = process.argv.slice(2);
  if (!input) {
    process.stderr.write('usage: node scripts/bench/chart.ts <results.json> [out.svg] [out.md]\n');
    process.exitCode = 2;
    return;
  }
  const run = JSON.parse(readFileSync(input, 'utf8')) as BenchRun;
  const svg = svgOut ?? input.replace(/\.json$/, '.svg');
  writeFileSync(svg, renderSvg(run));
  if (mdOut) writeFileSync(mdOut, renderMarkdown(run, svg.split('/').pop()!));
  process.stdout.write(`wrote ${svg}${mdOut ? ` and ${mdOut}` : ''}\n`);
}

if (import.meta.main) cli();
