// Shared pieces of the strand-ipam integration tests: configs, running the built plugin
// as many concurrent processes, and a consistency check of a store.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binDir, runPlugin, type PluginRun } from '../../helpers/run-plugin.ts';
import type { EtcdCluster } from '../../helpers/etcd.ts';
import type { Store } from '../../../ipam/store/types.ts';
import { main as ipamCli } from '../../../ipam/cli.ts';
import { parseCidr } from '../../../lib/addr/cidr.ts';

export const IPAM_BIN = join(binDir, 'strand-ipam');

export function requireBuilt(): void {
  if (!existsSync(IPAM_BIN)) throw new Error(`${IPAM_BIN} missing: run scripts/build.sh first`);
}

export function etcdSection(c: EtcdCluster, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const out: Record<string, unknown> = { endpoints: c.endpoints, prefix: '/s4test', dialTimeout: 2000, requestTimeout: 3000, ...extra };
  if (c.tls) out['tls'] = { ca: c.tls.ca, cert: c.tls.clientCert, key: c.tls.clientKey };
  return out;
}

let nodeLocalDir: string | undefined;

/**
 * strand-ipam's node-local directory for configs on etcd that name none: never the
 * machine's /var/lib/cni/networks (DEL records pending releases there, and host-local
 * files are read from there). One per test process, removed when it exits.
 */
function testNodeLocalDir(): string {
  if (!nodeLocalDir) {
    const d = mkdtempSync(join(tmpdir(), 'strand-ipam-node-'));
    nodeLocalDir = d;
    process.once('exit', () => rmSync(d, { recursive: true, force: true }));
  }
  return nodeLocalDir;
}

export function netConf(name: string, ipam: Record<string, unknown>, cniVersion = '1.1.0'): Record<string, unknown> {
  const dataDir = ipam['etcd'] !== undefined && ipam['dataDir'] === undefined ? { dataDir: testNodeLocalDir() } : {};
  return { cniVersion, name, type: 'bridge', ipam: { type: 'strand-ipam', ...dataDir, ...ipam } };
}

/**
 * A GC request for `conf`: `valid` as cni.dev/valid-attachments (null and undefined sent
 * as such: undefined leaves the key out), with ipam.gcGracePeriod 0 unless `ipam` says
 * otherwise (the attachments of a test are seconds old).
 */
export function gcConf(conf: Record<string, unknown>, valid: unknown, ipam: Record<string, unknown> = { gcGracePeriod: 0 }): Record<string, unknown> {
  const out: Record<string, unknown> = { ...conf, ipam: { ...(conf['ipam'] as object), ...ipam } };
  if (valid !== undefined) out['cni.dev/valid-attachments'] = valid;
  return out;
}

export interface Op {
  command: 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS';
  containerId: string;
  node: string;
  ifName?: string;
}

/** Runs the built plugin once, as the given node. */
export function plugin(op: Op, conf: object, extra: Record<string, string> = {}): Promise<PluginRun> {
  return runPlugin(
    IPAM_BIN,
    {
      command: op.command,
      containerId: op.containerId,
      netns: '/var/run/netns/none',
      ifName: op.ifName ?? 'eth0',
      path: '/usr/lib/cni',
      extra: { K8S_NODE_NAME: op.node, ...extra },
    },
    conf,
  );
}

/** Runs `ops` through the plugin with at most `parallel` processes at once; results in order. */
export async function runMany(ops: Op[], conf: object, parallel: number, onEach?: (i: number, r: PluginRun) => void): Promise<PluginRun[]> {
  const out: PluginRun[] = new Array(ops.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      for (;;) {
        const i = next++;
        if (i >= ops.length) return;
        const r = await plugin(ops[i] as Op, conf);
        out[i] = r;
        onEach?.(i, r);
      }
    }),
  );
  return out;
}

/** The first address of an ADD result (without prefix). */
export function addrOf(r: PluginRun): string {
  const a = r.json?.ips?.[0]?.address as string | undefined;
  if (r.code !== 0 || !a) throw new Error(`ADD failed: code ${r.code} ${r.stdout} ${r.stderr.slice(-500)}`);
  return a.split('/')[0] as string;
}

/**
 * Everything that must hold in a store: blocks of a network do not overlap, every block
 * entry is held by an attachment listing it, every attachment address is in its block.
 * Returns the problems found (empty when consistent) and the allocated addresses.
 */
export async function consistency(store: Store, network: string): Promise<{ problems: string[]; allocated: string[] }> {
  const problems: string[] = [];
  const blocks = await store.listBlocks(network);
  const atts = await store.listAttachments(network);
  const spans = blocks.map((b) => {
    const c = parseCidr(b.value.cidr);
    const size = 1n << BigInt((c.family === 4 ? 32 : 128) - c.prefix);
    return { cidr: b.value.cidr, family: c.family, lo: c.ip, hi: c.ip + size - 1n };
  });
  for (let i = 0; i < spans.length; i++) {
    for (let j = i + 1; j < spans.length; j++) {
      const a = spans[i]!;
      const b = spans[j]!;
      if (a.family === b.family && a.lo <= b.hi && b.lo <= a.hi) problems.push(`blocks ${a.cidr} and ${b.cidr} overlap`);
    }
  }
  const held = new Map<string, string>();
  for (const a of atts) for (const e of a.value.ips) held.set(e.ip, `${a.value.containerId}/${a.value.ifname}@${e.block}`);
  const allocated: string[] = [];
  for (const b of blocks) {
    for (const [ip, ref] of Object.entries(b.value.allocations)) {
      allocated.push(ip);
      if (held.get(ip) !== `${ref.containerId}/${ref.ifname}@${b.value.cidr}`)
        problems.push(`${ip} in ${b.value.cidr} held by ${ref.containerId}/${ref.ifname} but attachments say ${held.get(ip) ?? 'nothing'}`);
    }
  }
  const inBlocks = new Set(allocated);
  for (const [ip, who] of held) if (!inBlocks.has(ip)) problems.push(`${who} lists ${ip} which no block holds`);
  // the address index (etcd) or the computed one (files): exactly the attachments' addresses
  const index = new Map([...(await store.holders(network, '0.0.0.0/0')), ...(await store.holders(network, '::/0'))]);
  for (const [ip, who] of held) {
    const h = index.get(ip);
    if (!h || `${h.containerId}/${h.ifname}` !== who.split('@')[0])
      problems.push(`index: ${ip} of ${who} is indexed as ${h ? `${h.containerId}/${h.ifname}` : 'nothing'}`);
  }
  for (const ip of index.keys()) if (!held.has(ip)) problems.push(`index: ${ip} indexed but no attachment holds it`);
  return { problems, allocated };
}

/** Starts one plugin ADD and SIGKILLs it after `killAfterMs`; resolves when it is gone. */
export function addAndKill(conf: object, containerId: string, node: string, killAfterMs: number): Promise<{ signal: string | null; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(IPAM_BIN, [], {
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: containerId,
        CNI_NETNS: '/var/run/netns/none',
        CNI_IFNAME: 'eth0',
        CNI_PATH: '/usr/lib/cni',
        K8S_NODE_NAME: node,
      },
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    const t = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(JSON.stringify(conf));
  });
}

/** `strand ipam <argv>` in this process (the CLI's own entry point). */
export async function cli(argv: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await ipamCli(argv, {
    stdout: {
      write: (s: string) => {
        out += s;
      },
    },
    stderr: {
      write: (s: string) => {
        err += s;
      },
    },
    env,
  });
  return { code, out, err };
}

/** The attachments of `network` as "containerId/ifname=ip,ip" lines, sorted (a store's end state). */
export async function holdings(store: Store, network: string): Promise<string[]> {
  return (await store.listAttachments(network)).map((a) => `${a.value.containerId}/${a.value.ifname}=${a.value.ips.map((e) => e.ip).join(',')}`).sort();
}
