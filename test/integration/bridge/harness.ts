// Shared set-up for the bridge integration and differential tests: a fresh "host"
// namespace per plugin run (the bridge is never created in the machine's real
// namespace), pod namespaces, a private host-local data directory, and a wrapper that
// runs a plugin binary inside the host namespace exactly as a runtime would run it there.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { NetnsSet, nsExec } from '../../helpers/netns.ts';
import { binDir, refBinDir, runPlugin, type PluginRun } from '../../helpers/run-plugin.ts';
import { listFiles } from '../../helpers/kstate.ts';

export const STRAND_BRIDGE = join(binDir, 'strand-bridge');
export const REF_BRIDGE = join(refBinDir, 'bridge');
export const REF_HOST_LOCAL = join(refBinDir, 'host-local');

/** Versions with ADD/DEL; CHECK from 0.4.0. The reference bridge stops at 1.0.0. */
export const ADD_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export const CHECK_VERSIONS = ['0.4.0', '1.0.0', '1.1.0'] as const;

export function requireBinaries(): void {
  for (const f of [STRAND_BRIDGE, REF_BRIDGE, REF_HOST_LOCAL]) {
    if (!existsSync(f)) throw new Error(`missing ${f}: run scripts/build.sh (strand) / scripts/setup.sh (reference plugins)`);
  }
}

export type Conf = Record<string, unknown>;

export interface Attachment {
  podNs: string;
  containerId: string;
  ifName: string;
}

export class BridgeEnv {
  readonly ns: NetnsSet;
  readonly tmp: string;
  readonly wrapper: string;
  readonly dataDir: string;
  readonly bridge: string;

  constructor() {
    this.ns = new NetnsSet();
    this.tmp = mkdtempSync(join(tmpdir(), `${this.ns.prefix}-`));
    this.dataDir = join(this.tmp, 'ipam');
    this.bridge = `${this.ns.prefix}-br`;
    this.wrapper = join(this.tmp, 'in-netns');
    // The plugin runs in the host namespace named by STRAND_T_NS.
    writeFileSync(this.wrapper, '#!/bin/sh\nexec /usr/bin/ip netns exec "$STRAND_T_NS" "$STRAND_T_BIN"\n');
    chmodSync(this.wrapper, 0o755);
  }

  get prefix(): string {
    return this.ns.prefix;
  }

  /** Network config: the given options over a host-local IPv4 /24 with its own data dir. */
  conf(cniVersion: string, opts: Conf = {}, ipam?: Conf | null): Conf {
    // host-local 1.1.1 (Debian) stops at spec 1.0.0: 1.1.0 configs use strand-ipam.
    const ipamType = cniVersion === '1.1.0' ? 'strand-ipam' : 'host-local';
    const base: Conf = {
      cniVersion,
      name: `${this.prefix}-net`,
      type: 'bridge',
      bridge: this.bridge,
      ipam:
        ipam === null
          ? {}
          : {
              type: ipamType,
              dataDir: this.dataDir,
              ranges: [[{ subnet: '10.77.0.0/24' }]],
              ...(ipam ?? {}),
            },
    };
    return { ...base, ...opts };
  }

  run(
    bin: string,
    hostNs: string,
    command: string,
    att: Attachment,
    conf: Conf,
    extra: { args?: string; path?: string; netnsPath?: string } = {},
  ): Promise<PluginRun> {
    const env: Parameters<typeof runPlugin>[1] = {
      command,
      containerId: att.containerId,
      netns: extra.netnsPath ?? this.ns.path(att.podNs),
      ifName: att.ifName,
      path: extra.path ?? `${binDir}:${refBinDir}`,
      extra: { STRAND_T_NS: hostNs, STRAND_T_BIN: bin },
    };
    if (extra.args !== undefined) env.args = extra.args;
    // The same conflist for either implementation, only `type` differs.
    return runPlugin(this.wrapper, env, { ...conf, type: basename(bin) });
  }

  ipamFiles(): Record<string, string> {
    return listFiles(this.dataDir);
  }

  /**
   * What the IPAM store still holds for attachments: host-local's files named by IP
   * (lock and last_reserved_ip excluded), strand-ipam's local-store attachments.
   */
  ipamReservations(): string[] {
    const out: string[] = [];
    for (const [f, body] of Object.entries(this.ipamFiles())) {
      if (/(^|\/)(lock|last_reserved_ip\.\d+|strand-ipam\.lock)$/.test(f)) continue;
      if (f.endsWith('strand-ipam.json')) {
        const doc = JSON.parse(body) as { attachments?: Record<string, unknown> };
        out.push(...Object.keys(doc.attachments ?? {}).map((k) => `${f}:${k}`));
      } else out.push(f);
    }
    return out;
  }

  cleanup(): void {
    this.ns.cleanup();
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

/** Asserts success and returns the parsed result. */
export function ok(r: PluginRun, what = 'plugin'): any {
  if (r.code !== 0) {
    throw new Error(`${what} failed (exit ${r.code}): stdout=${r.stdout} stderr=${r.stderr}`);
  }
  return r.json;
}

export function ping(fromNs: string, to: string): boolean {
  const args = to.includes(':') ? ['-6', '-c', '1', '-W', '2', to] : ['-c', '1', '-W', '2', to];
  const r = spawnSync('ip', ['netns', 'exec', fromNs, 'ping', ...args], { encoding: 'utf8' });
  return r.status === 0;
}

export function sh(ns: string, cmd: string, args: string[]): string {
  return nsExec(ns, cmd, args);
}

export function hostIp(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8' });
}

/** Address without prefix. */
export function bare(cidr: string): string {
  return cidr.split('/')[0]!;
}
