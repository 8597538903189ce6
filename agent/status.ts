// The agent's state file (default /run/strand/agent.json), rewritten atomically after
// every reconcile and at least once per resync interval, and `strand agent status`,
// which reads it. Ready means: the agent process is alive, wrote the file recently, and
// is synced (it listed etcd, applied the result and its watch is running).
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Mode } from './model.ts';
import type { BlockRef, DesiredRoute, PeerSummary } from './reconcile.ts';

export const STATE_VERSION = 1;

export interface AgentState {
  version: typeof STATE_VERSION;
  pid: number;
  node: string;
  mode: Mode;
  addresses: string[];
  started: string;
  /** Last time the file was written (ISO). */
  updated: string;
  /** The file counts as stale (agent hung or gone) after this many ms without a write. */
  staleAfterMs: number;
  synced: boolean;
  /** When the agent last became synced (ISO). */
  syncedAt?: string;
  registered: boolean;
  etcd: { connected: boolean; revision?: number; lastError?: string };
  vtep?: { device: string; mac: string; mtu: number; vni: number; port: number };
  /** Flat mode: the uplink taken over by the bridge, how this start found it, since when, how long it took (ms). */
  flat?: { uplink: string; bridge: string; takeover: 'taken-over' | 'recognised' | 'adopted'; since?: string; ms?: number; reserved?: string[] };
  /** The pod MTU last written to the pod MTU file. */
  podMtu?: number;
  routeProtocol: number;
  peers: PeerSummary[];
  routes: Array<Pick<DesiredRoute, 'dst' | 'gw' | 'dev' | 'node' | 'why'>>;
  orphanBlocks: BlockRef[];
  podLinks: string[];
  problems: string[];
  lastReconcile?: { at: string; reason: string; ops: number; errors: string[]; ms: number };
}

/** Writes `text` to `file` by temp file + rename (readers see the old or the new file), creating its directory. */
export function writeFileAtomic(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o644 });
  renameSync(tmp, file);
}

export function writeState(file: string, s: AgentState): void {
  writeFileAtomic(file, `${JSON.stringify(s, null, 2)}\n`);
}

class StateFileError extends Error {
  override readonly name = 'StateFileError';
}

export function readState(file: string): AgentState {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new StateFileError(code === 'ENOENT' ? `no agent state at ${file} (is strand agent running?)` : `cannot read ${file} (${code ?? 'error'})`);
  }
  try {
    const s = JSON.parse(text) as AgentState;
    if (s.version !== STATE_VERSION) throw new Error(`version ${String(s.version)}`);
    return s;
  } catch (e) {
    throw new StateFileError(`${file} is not an agent state file: ${(e as Error).message}`);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface Readiness {
  ready: boolean;
  running: boolean;
  stale: boolean;
  reason?: string;
}

/** Whether the agent behind this state is running and synced, as of `now`. */
export function readiness(s: AgentState, now: number, alive: (pid: number) => boolean = pidAlive): Readiness {
  const running = alive(s.pid);
  const stale = now - Date.parse(s.updated) > s.staleAfterMs;
  if (!running) return { ready: false, running, stale, reason: `agent (pid ${s.pid}) is not running` };
  if (stale) return { ready: false, running, stale, reason: `state not updated since ${s.updated}` };
  if (!s.synced)
    return { ready: false, running, stale, reason: s.etcd.connected ? 'not synced yet' : `etcd unreachable${s.etcd.lastError ? `: ${s.etcd.lastError}` : ''}` };
  return { ready: true, running, stale };
}

/** Human-readable status. */
export function formatState(s: AgentState, r: Readiness): string {
  const lines: string[] = [];
  lines.push(
    `node:       ${s.node} (${s.addresses.join(', ')}), mode ${s.mode}${s.vtep ? `, ${s.vtep.device} vni ${s.vtep.vni} port ${s.vtep.port} mtu ${s.vtep.mtu} mac ${s.vtep.mac}` : ''}`,
  );
  if (s.flat) {
    const f = s.flat;
    lines.push(
      `flat:       ${f.uplink} in ${f.bridge} (${f.takeover}${f.since ? ` ${f.since}` : ''}${f.ms !== undefined ? `, ${f.ms} ms` : ''})${f.reserved ? `, reserved in IPAM: ${f.reserved.join(', ')}` : ''}`,
    );
  }
  if (s.podMtu !== undefined) lines.push(`pod MTU:    ${s.podMtu}`);
  lines.push(`state:      ${r.ready ? 'synced' : `NOT synced (${r.reason ?? 'unknown'})`}`);
  lines.push(`agent:      pid ${s.pid}${r.running ? '' : ' (gone)'}, started ${s.started}, updated ${s.updated}`);
  lines.push(
    `etcd:       ${s.etcd.connected ? 'connected' : 'disconnected'}${s.etcd.revision !== undefined ? `, revision ${s.etcd.revision}` : ''}${s.registered ? ', node registered' : ', node NOT registered'}`,
  );
  if (s.lastReconcile) {
    const l = s.lastReconcile;
    lines.push(`reconcile:  ${l.at} (${l.reason}), ${l.ops} change(s), ${l.errors.length} error(s), ${l.ms.toFixed(1)} ms`);
  }
  lines.push(`peers (${s.peers.length}):`);
  for (const p of s.peers) {
    const extra = p.borrowed.length ? `, borrowed ${p.borrowed.join(' ')}` : '';
    const away = p.alive === false ? ' (agent away)' : '';
    lines.push(`  ${p.name.padEnd(20)} ${p.addresses.join(',').padEnd(18)} ${p.vtepMac ?? ''} blocks ${p.blocks.join(' ') || '-'}${extra}${away}`);
  }
  lines.push(`routes (${s.routes.length}, proto ${s.routeProtocol}):`);
  for (const rt of s.routes) lines.push(`  ${rt.dst.padEnd(20)} ${rt.gw ? `via ${rt.gw} ` : ''}${rt.dev ? `dev ${rt.dev} ` : ''}-> ${rt.node}`);
  if (s.orphanBlocks.length) lines.push(`blocks of nodes without a record (not routed): ${s.orphanBlocks.map((b) => `${b.cidr} (${b.node})`).join(', ')}`);
  if (s.podLinks.length) lines.push(`pod links (proxy ARP): ${s.podLinks.join(', ')}`);
  for (const p of s.problems) lines.push(`problem: ${p}`);
  for (const e of s.lastReconcile?.errors ?? []) lines.push(`error: ${e}`);
  return `${lines.join('\n')}\n`;
}
