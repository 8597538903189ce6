import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ipJson } from '../../helpers/netns.ts';
import type { CniEnv } from '../../helpers/cnitool.ts';

// Shared pieces of the deploy tests: conflist builders, a recording pass-through plugin,
// and kernel/IPAM leak checks.

/** Spec versions a libcni 1.1.2 runtime can chain (prevResult needs >= 0.3.0). */
export const CHAIN_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] as const;

export interface Ranges {
  v4: string;
  v6?: string;
}

/** host-local style IPAM section (also what strand-ipam accepts with only `type` changed). */
export function ipamConf(type: 'host-local' | 'strand-ipam', dataDir: string, r: Ranges): Record<string, unknown> {
  const ranges: Array<Array<{ subnet: string }>> = [[{ subnet: r.v4 }]];
  if (r.v6) ranges.push([{ subnet: r.v6 }]);
  return { type, dataDir, ranges };
}

export function bridgeConf(type: 'bridge' | 'strand-bridge', bridge: string, ipam: Record<string, unknown>): Record<string, unknown> {
  return { type, bridge, isGateway: true, isDefaultGateway: true, ipam };
}

/** Reference meta plugins chained after the main plugin, each followed by a recorder. */
export function metaChain(tag: (n: number) => Record<string, unknown>, portmap: 'portmap' | 'strand-portmap' = 'portmap'): Record<string, unknown>[] {
  return [
    tag(1),
    { type: portmap, capabilities: { portMappings: true }, snat: true },
    tag(2),
    { type: 'tuning', mtu: 1400, sysctl: { 'net.ipv4.conf.eth0.arp_filter': '1' } },
    tag(3),
    { type: 'bandwidth', ingressRate: 8_000_000, ingressBurst: 100_000, egressRate: 8_000_000, egressBurst: 100_000 },
    tag(4),
  ];
}

export interface Record_ {
  cmd: string;
  tag: string;
  conf: any;
}

/**
 * A pass-through plugin `recorder` written into a temp CNI_PATH directory: it appends
 * its stdin to `recordFile` (from its config) and answers ADD with its prevResult, so
 * each recorder in a chain shows exactly what the previous plugin handed on. First in a
 * list it answers its config's `result` (or an empty result): `first(result)` makes
 * such an entry, standing in for "another plugin" that set up an interface.
 */
export function installRecorder(env: CniEnv): {
  dir: string;
  file: string;
  tag: (n: number) => Record<string, unknown>;
  first: (result: object) => Record<string, unknown>;
  records(): Record_[];
} {
  const dir = env.dir('recorder-bin');
  const file = join(env.root, 'records.jsonl');
  const exe = join(dir, 'recorder');
  writeFileSync(
    exe,
    `#!${process.execPath}
const fs = require('node:fs');
const cmd = process.env.CNI_COMMAND;
if (cmd === 'VERSION') {
  process.stdout.write(JSON.stringify({ cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] }));
  process.exit(0);
}
const conf = JSON.parse(fs.readFileSync(0, 'utf8'));
fs.appendFileSync(conf.recordFile, JSON.stringify({ cmd, tag: conf.tag, conf }) + '\\n');
if (cmd === 'ADD') process.stdout.write(JSON.stringify(conf.prevResult ?? conf.result ?? { cniVersion: conf.cniVersion }));
`,
  );
  chmodSync(exe, 0o755);
  return {
    dir,
    file,
    tag: (n) => ({ type: 'recorder', tag: `r${n}`, recordFile: file }),
    first: (result) => ({ type: 'recorder', tag: 'r0', recordFile: file, result }),
    records: () =>
      existsSync(file)
        ? readFileSync(file, 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l) as Record_)
        : [],
  };
}

/** Files under `dir` (recursively) whose content mentions `needle` (a container ID). */
export function filesMentioning(dir: string, needle: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) out.push(...filesMentioning(p, needle));
    else if (st.isFile() && readFileSync(p).includes(needle)) out.push(p);
  }
  return out;
}

export interface AddrInfo {
  ifname: string;
  mtu: number;
  addr_info: Array<{ family: string; local: string; prefixlen: number; scope: string }>;
}

/** Global-scope addresses of `dev` in namespace `ns`, as "addr/prefix". */
export function globalAddrs(ns: string, dev: string): string[] {
  const [link] = ipJson<AddrInfo[]>(['addr', 'show', 'dev', dev], { ns });
  return (link?.addr_info ?? []).filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`);
}

/** Link names in namespace `ns`. */
export function linkNames(ns: string): string[] {
  return ipJson<Array<{ ifname: string }>>(['link', 'show'], { ns }).map((l) => l.ifname);
}

/** The spec's result -> the addresses it lists ("ip4"/"ip6" form for 0.1.0/0.2.0). */
export function resultAddrs(result: any): string[] {
  if (Array.isArray(result?.ips)) return result.ips.map((i: { address: string }) => i.address);
  return [result?.ip4?.ip, result?.ip6?.ip].filter((x): x is string => typeof x === 'string');
}

/**
 * CNI VERSION of `bin` as a runtime asks it (config on stdin). A plugin may answer
 * without reading stdin and exit first: the write then fails with EPIPE, which Go's
 * os/exec (libcni) ignores too, so only the answer and the exit status count.
 */
export function versionOf(bin: string): { cniVersion: string; supportedVersions: string[] } {
  // a shim is sent to a socket that does not exist, never the machine's /run/strand/cni.sock
  const env = { CNI_COMMAND: 'VERSION', STRAND_DAEMON_SOCKET: '/nonexistent/strand-test-daemon.sock' };
  const r = spawnSync(bin, { env, input: '{"cniVersion":"1.0.0"}', encoding: 'utf8', timeout: 60_000 });
  if (r.error && (r.error as NodeJS.ErrnoException).code !== 'EPIPE') throw r.error;
  if (r.status !== 0) throw new Error(`${bin} VERSION exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}
