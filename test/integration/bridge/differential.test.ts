// Differential test: the same conflist through the reference `bridge` (Debian
// containernetworking-plugins 1.1.1) and through `strand-bridge`, each in its own fresh
// host + pod namespace pair with the reference host-local as IPAM. The kernel state
// (links with bridge and port attributes, MTUs, addresses, routes, sysctls, nat rules,
// nftables) and the result JSON must match after normalising random veth names, MACs and
// link-local addresses. Then CHECK passes for both, and after DEL the states match again.
//
// Deliberate differences, each asserted on its own rather than silently ignored:
// - veth txqlen: 1.1.1 creates veths with txqlen 0 (it sent IFLA_TXQLEN=0); upstream
//   since fixed it to the kernel default, which strand keeps (1000).
// - keep_addr_on_down=1 on the pod interface when it gets an IPv6 address: added by
//   upstream after 1.1.1; strand follows upstream.
// - CHECK of an L2-only network (`ipam: {}`): 1.1.1 fails it, strand passes it.
// - result `dns`: 1.1.1 always prints `"dns": {}`; an empty DNS object is dropped from
//   both sides before comparing.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BridgeEnv, REF_BRIDGE, requireBinaries, STRAND_BRIDGE } from './harness.ts';
import { cleanResult, reconcile, runSide, type Scenario } from './diff.ts';

let env: BridgeEnv | undefined;
beforeAll(() => requireBinaries());
afterEach(() => {
  env?.cleanup();
  env = undefined;
});

const dualStack = {
  ranges: [[{ subnet: '10.77.0.0/24' }], [{ subnet: 'fd77::/64' }]],
  routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }],
};

const scenarios: Scenario[] = [
  { name: 'default config', opts: {} },
  { name: 'isGateway', opts: { isGateway: true }, pods: 2 },
  { name: 'isDefaultGateway', opts: { isDefaultGateway: true } },
  { name: 'ipMasq', opts: { isGateway: true, ipMasq: true } },
  { name: 'hairpinMode', opts: { isGateway: true, hairpinMode: true } },
  { name: 'custom mtu', opts: { isGateway: true, mtu: 1400 } },
  // one pod: with two and no gateway address the bridge takes the lower of two random port MACs
  { name: 'ipam {} (L2 only)', opts: {}, ipam: null },
  { name: 'dual-stack IPv4+IPv6', opts: { isGateway: true, ipMasq: true }, ipam: dualStack },
  { name: 'dual-stack isDefaultGateway', opts: { isDefaultGateway: true }, ipam: { ranges: dualStack.ranges } },
  { name: 'promiscMode', opts: { isGateway: true, promiscMode: true } },
  { name: 'enabledad', opts: { isGateway: true, enabledad: true }, ipam: dualStack },
  { name: 'MAC from CNI_ARGS', opts: { isGateway: true }, args: 'IgnoreUnknown=1;MAC=0a:58:0a:4d:00:99' },
  { name: 'runtimeConfig.mac', opts: { isGateway: true, runtimeConfig: { mac: '0a:58:0a:4d:00:98' } } },
  { name: 'macspoofchk', opts: { isGateway: true, macspoofchk: true }, nft: true },
  { name: 'IPAM routes', opts: { isGateway: true }, ipam: { routes: [{ dst: '192.168.50.0/24', gw: '10.77.0.254' }, { dst: '0.0.0.0/0' }] } },
];

describe.each(['0.4.0', '1.0.0', '0.3.1'])('differential vs reference bridge, spec %s', (version) => {
  it.each(scenarios)('$name', async (sc) => {
    env = new BridgeEnv();
    const ref = await runSide(env, REF_BRIDGE, 'r', version, sc);
    // STRAND_T_DIFF_SELF=1 diffs the reference against itself: checks that the
    // normalisation leaves no run-to-run noise.
    const self = process.env['STRAND_T_DIFF_SELF'] === '1';
    const ours = await runSide(env, self ? REF_BRIDGE : STRAND_BRIDGE, 's', version, sc);
    // strand's veths keep the kernel's default queue length
    if (!self) for (const l of ours.raw.host.links) if (l.kind === 'veth') expect(l.txqlen).toBe(1000);
    const dual = JSON.stringify(sc.ipam ?? {}).includes('fd77');
    reconcile(ref.add, ours.add, dual);
    reconcile(ref.del, ours.del, dual);
    expect(ours.results.map(cleanResult)).toEqual(ref.results.map(cleanResult));
    expect(ours.add).toEqual(ref.add);
    expect(ours.del).toEqual(ref.del);
  });
});
