// Failure injection: an ADD that fails at any step leaves the host exactly as before:
// the same links, addresses, routes, sysctls and nat/nftables rules in the host and pod
// namespaces (kstate snapshots, compared without normalisation), and the same IPAM
// reservations and files (host-local's own bookkeeping excepted: last_reserved_ip
// advances on every allocation and `lock` is created by any run; neither reserves an
// address). A bridge's carrier and operstate are left out: they follow its ports through
// the kernel's linkwatch (a bridge that never had a port reports UNKNOWN/LOWER_UP, one
// whose last port left reports NO-CARRIER), which no plugin can restore.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ip, nsExec } from '../../helpers/netns.ts';
import { snapshot, waitDadSettled, type Snapshot } from '../../helpers/kstate.ts';
import { BridgeEnv, ok, requireBinaries, STRAND_BRIDGE, type Attachment, type Conf } from './harness.ts';

let env: BridgeEnv | undefined;
beforeAll(() => requireBinaries());
afterEach(() => {
  env?.cleanup();
  env = undefined;
});

interface World {
  e: BridgeEnv;
  host: string;
  pod: Attachment;
  before: () => Promise<{ snap: Snapshot; files: Record<string, string> }>;
}

function files(e: BridgeEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [f, body] of Object.entries(e.ipamFiles())) if (!/(last_reserved_ip\.\d+|\/lock)$/.test(f)) out[f] = body;
  return out;
}

/** A host namespace, optionally with a first pod already attached (so the bridge exists). */
async function world(withFirstPod: boolean): Promise<World> {
  const e = new BridgeEnv();
  env = e;
  const host = e.ns.add('host');
  if (withFirstPod) {
    const first: Attachment = { podNs: e.ns.add('p0'), containerId: `${e.prefix}-c0`, ifName: 'eth0' };
    ok(await e.run(STRAND_BRIDGE, host, 'ADD', first, e.conf('1.0.0', { isGateway: true })), 'first ADD');
  }
  const pod: Attachment = { podNs: e.ns.add('p1'), containerId: `${e.prefix}-c1`, ifName: 'eth0' };
  const before = async (): Promise<{ snap: Snapshot; files: Record<string, string> }> => {
    await waitDadSettled([host, pod.podNs]);
    const snap = snapshot({ hostNs: host, podNs: pod.podNs, nft: true });
    for (const l of snap.host.links) {
      if (l.kind !== 'bridge') continue;
      l.operstate = '*';
      l.flags = l.flags.filter((f) => f !== 'LOWER_UP' && f !== 'NO-CARRIER');
    }
    return { snap, files: files(e) };
  };
  return { e, host, pod, before };
}

async function expectFailureLeavesNoTrace(
  w: World,
  conf: Conf,
  code: number | ((c: number) => boolean),
  extra: { netnsPath?: string; args?: string } = {},
): Promise<unknown> {
  const before = await w.before();
  const r = await w.e.run(STRAND_BRIDGE, w.host, 'ADD', w.pod, conf, extra);
  expect(r.code, r.stdout + r.stderr).toBe(1);
  const got = r.json?.code as number;
  if (typeof code === 'number') expect(got, r.stdout).toBe(code);
  else expect(code(got), r.stdout).toBe(true);
  const after = await w.before();
  expect(after.snap).toEqual(before.snap);
  expect(after.files).toEqual(before.files);
  return r.json;
}

describe.each([false, true])('failed ADD leaves no trace (bridge already exists: %s)', (existing) => {
  it('IPAM delegate fails', async () => {
    const w = await world(existing);
    // rangeStart outside the subnet: host-local refuses the config
    const bad = w.e.conf('1.0.0', { isGateway: true }, { ranges: [[{ subnet: '10.77.0.0/24', rangeStart: '10.99.0.5' }]] });
    await expectFailureLeavesNoTrace(w, bad, (c) => c !== 0);
  });

  it('IPAM binary missing', async () => {
    const w = await world(existing);
    const conf = w.e.conf('1.0.0', { isGateway: true });
    const r = await expectFailureLeavesNoTrace(w, { ...conf, ipam: { ...(conf['ipam'] as Conf), type: 'no-such-ipam' } }, 999);
    expect(JSON.stringify(r)).toContain('no-such-ipam');
  });

  it('pod interface name already exists', async () => {
    const w = await world(existing);
    ip(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'other0'], { ns: w.pod.podNs });
    const r = await expectFailureLeavesNoTrace(w, w.e.conf('1.0.0', { isGateway: true }), 4);
    expect(JSON.stringify(r)).toContain('eth0');
  });

  it('netns path missing', async () => {
    const w = await world(existing);
    await expectFailureLeavesNoTrace(w, w.e.conf('1.0.0', { isGateway: true }), 4, { netnsPath: `/run/netns/${w.e.prefix}-gone` });
  });

  it('netns path is not a network namespace', async () => {
    const w = await world(existing);
    await expectFailureLeavesNoTrace(w, w.e.conf('1.0.0', { isGateway: true }), 4, { netnsPath: '/etc/hostname' });
  });

  it('late failure: masquerade setup fails after addresses, gateway and forwarding are in place', async () => {
    const w = await world(existing);
    // A chain `postrouting` of another type in the nftables masquerade table makes the
    // nftables backend fail at the very last step of ADD.
    nsExec(w.host, 'nft', ['add table inet cni_plugins_masquerade']);
    nsExec(w.host, 'nft', ['add chain inet cni_plugins_masquerade postrouting { type filter hook input priority 0 ; }']);
    const conf = w.e.conf('1.0.0', { isDefaultGateway: true, ipMasq: true, ipMasqBackend: 'nftables' });
    await expectFailureLeavesNoTrace(w, conf, (c) => c !== 0);
  });

  it('late failure: gateway address conflict without forceAddress', async () => {
    const w = await world(existing);
    if (existing) {
      // the first pod's gateway address was replaced by another one
      ip(['addr', 'del', '10.77.0.1/24', 'dev', w.e.bridge], { ns: w.host });
    } else {
      ip(['link', 'add', w.e.bridge, 'type', 'bridge'], { ns: w.host });
      ip(['link', 'set', w.e.bridge, 'up'], { ns: w.host });
    }
    ip(['addr', 'add', '10.77.0.254/24', 'dev', w.e.bridge], { ns: w.host });
    const r = await expectFailureLeavesNoTrace(w, w.e.conf('1.0.0', { isGateway: true }), 7);
    expect(JSON.stringify(r)).toContain('already has an IP address');
  });
});

describe('failed ADD before anything is touched', () => {
  it('bridge name invalid: code 7 naming the field, no namespace touched', async () => {
    const w = await world(false);
    for (const name of ['bad/name', 'x'.repeat(16), 'has space', '..']) {
      const r = await expectFailureLeavesNoTrace(w, { ...w.e.conf('1.0.0'), bridge: name }, 7);
      expect(JSON.stringify(r)).toContain('bridge');
    }
  });

  it('bridge name taken by a link that is not a bridge', async () => {
    const w = await world(false);
    ip(['link', 'add', w.e.bridge, 'type', 'veth', 'peer', 'name', `${w.e.prefix}-peer`], { ns: w.host });
    const r = await expectFailureLeavesNoTrace(w, w.e.conf('1.0.0', { isGateway: true }), 7);
    expect(JSON.stringify(r)).toContain('not a bridge');
  });

  it('hairpinMode with promiscMode', async () => {
    const w = await world(false);
    await expectFailureLeavesNoTrace(w, w.e.conf('1.0.0', { hairpinMode: true, promiscMode: true }), 7);
  });

  it('disableContainerInterface with IPAM', async () => {
    const w = await world(false);
    await expectFailureLeavesNoTrace(w, w.e.conf('1.0.0', { disableContainerInterface: true }), 7);
  });
});
