// Capability arguments as containerd's go-cni sends them (Go structs without JSON tags:
// {"Subnet": ..., "RangeStart": "", ...}), fed to the built strand-ipam and, with the same
// stdin, to the reference host-local (Debian's containernetworking-plugins), which
// decodes them with Go's case-insensitive field matching. strand-ipam must answer alike:
// the same addresses for a range set with Go's key spelling and empty fields; a refusal
// (code 7 naming the field, where the reference fails to decode) for go-cni's flat
// WithCapabilityIPRanges list, which is not a list of range sets.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { refBinDir, runPlugin, type PluginRun } from '../../helpers/run-plugin.ts';
import { IPAM_BIN, requireBuilt } from './helpers.ts';

const HOST_LOCAL = join(refBinDir, 'host-local');

describe('capability arguments spelled as go-cni sends them', () => {
  let dir: string;
  beforeAll(() => requireBuilt());
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'lf-caps-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** ADD through strand-ipam and host-local, each with its own data dir; the same config otherwise. */
  async function both(runtimeConfig: Record<string, unknown>, id: string): Promise<{ strand: PluginRun; ref: PluginRun }> {
    const conf = (type: string): Record<string, unknown> => ({
      cniVersion: '1.0.0',
      name: 'lfcaps',
      type: 'bridge',
      capabilities: { ipRanges: true, ips: true },
      runtimeConfig,
      ipam: { type, dataDir: join(dir, type), ranges: [[{ subnet: '10.95.0.0/24' }]] },
    });
    const env = { command: 'ADD', containerId: id, netns: '/run/netns/lf-none', ifName: 'eth0', path: refBinDir };
    return { strand: await runPlugin(IPAM_BIN, env, conf('strand-ipam')), ref: await runPlugin(HOST_LOCAL, env, conf('host-local')) };
  }

  const addresses = (r: PluginRun): string[] =>
    ((r.json?.ips ?? []) as Array<{ address: string; gateway?: string }>).map((i) => `${i.address} gw ${i.gateway}`);

  it('ipRanges as range sets with Go key spelling and empty fields: the same addresses as host-local', async () => {
    // the exact bytes Go's encoding/json writes for [][]IPRanges{{{Subnet: ..., RangeStart: ...}}}
    const ipRanges = JSON.parse('[[{"Subnet":"10.94.0.0/24","RangeStart":"10.94.0.10","RangeEnd":"","Gateway":""}]]') as unknown;
    const a = await both({ ipRanges }, 'c1');
    expect(a.ref.code, a.ref.stdout).toBe(0);
    expect(a.strand.code, a.strand.stdout + a.strand.stderr).toBe(0);
    expect(addresses(a.strand)).toEqual(addresses(a.ref));
    expect(addresses(a.strand)).toEqual(['10.94.0.10/24 gw 10.94.0.1', '10.95.0.2/24 gw 10.95.0.1']);
    // with a gateway and a requested address (ips: strings, as go-cni's WithCapability passes them)
    const b = await both({ ipRanges: [[{ Subnet: '10.96.0.0/24', Gateway: '10.96.0.254' }]], ips: ['10.96.0.7/24'] }, 'c2');
    expect(b.ref.code, b.ref.stdout).toBe(0);
    expect(addresses(b.strand)).toEqual(addresses(b.ref));
    expect(addresses(b.strand)).toEqual(['10.96.0.7/24 gw 10.96.0.254', '10.95.0.3/24 gw 10.95.0.1']);
  });

  it("go-cni's WithCapabilityIPRanges (a flat list of IPRanges structs): refused, naming the field, as the reference cannot decode it", async () => {
    const flat = JSON.parse('[{"Subnet":"10.94.0.0/24","RangeStart":"","RangeEnd":"","Gateway":""}]') as unknown;
    const r = await both({ ipRanges: flat }, 'c3');
    expect(r.ref.code).toBe(1);
    expect(r.ref.json?.msg).toMatch(/cannot unmarshal object into Go struct field .*ipRanges/);
    expect(r.strand.code).toBe(1);
    expect(r.strand.json?.code).toBe(7);
    expect(r.strand.json?.msg).toMatch(/^runtimeConfig\.ipRanges\[0\]: must be a range set/);
  });
});
