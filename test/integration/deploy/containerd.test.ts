import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildPauseImage, Containerd } from '../../helpers/containerd.ts';
import { NetnsSet } from '../../helpers/netns.ts';
import { refBinDir } from '../../helpers/run-plugin.ts';
import { filesMentioning, linkNames } from './fixtures.ts';

// containerd end to end: Debian's containerd + runc started by the test, driven through
// the CRI API (RunPodSandbox, PodSandboxStatus, StopPodSandbox, RemovePodSandbox) as the
// kubelet does. containerd runs in a fresh "host" namespace, so the bridge, veths and
// rules its CNI plugins create stay there.

const PODS = 10;

let netns: NetnsSet | undefined;
let ctd: Containerd | undefined;

afterEach(async () => {
  if (ctd) {
    await removeAllSandboxes(ctd).catch(() => {});
    await ctd.stop();
    ctd = undefined;
  }
  netns?.cleanup();
  netns = undefined;
});

async function removeAllSandboxes(c: Containerd): Promise<void> {
  for (const s of await c.cri().listPodSandbox()) {
    await c.cri().stopPodSandbox(s.id);
    await c.cri().removePodSandbox(s.id);
  }
}

/** Starts containerd in a fresh host namespace with the pause image imported. */
async function startContainerd(streamPort: number): Promise<{ c: Containerd; host: string }> {
  const tar = buildPauseImage();
  netns = new NetnsSet();
  const host = netns.add('h');
  ctd = await Containerd.start({ hostNs: host, streamPort, cgroupParent: `/strand-test-${netns.prefix}` });
  ctd.importImage(tar);
  return { c: ctd, host };
}

function copyRefPlugins(c: Containerd, names: string[]): void {
  for (const n of names) copyFileSync(join(refBinDir, n), join(c.cniBinDir, n));
}

function inPod(netnsPath: string, cmd: string[]): string {
  return execFileSync('nsenter', [`--net=${netnsPath}`, ...cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

interface Pod {
  id: string;
  ip: string;
  netns: string;
}

/**
 * Runs PODS sandboxes concurrently, checks each is ready with an address inside
 * `subnetPrefix` that is also on the pod's eth0, that all addresses differ, and that
 * every pod reaches the next one (a ring) and the gateway.
 */
async function runPods(c: Containerd, prefix: string, subnetPrefix: string, gateway: string): Promise<Pod[]> {
  const cri = c.cri();
  const ids = await Promise.all(
    Array.from({ length: PODS }, (_, i) =>
      cri.runPodSandbox({
        metadata: { name: `pod-${i}`, uid: `${prefix}-uid-${i}`, namespace: 'default', attempt: 0 },
        hostname: `pod-${i}`,
        logDirectory: join(c.dir, 'logs', `pod-${i}`),
        labels: { test: prefix },
        linux: { cgroupParent: c.opts.cgroupParent },
      }),
    ),
  );
  const pods: Pod[] = [];
  for (const id of ids) {
    const st = await cri.podSandboxStatus(id);
    expect(st.status.state).toBe('SANDBOX_READY');
    const ip = st.status.network?.ip ?? '';
    expect(ip.startsWith(subnetPrefix), `pod ip ${ip}`).toBe(true);
    const path = await cri.netnsPath(id);
    const addrs = JSON.parse(inPod(path, ['ip', '-j', 'addr', 'show', 'eth0'])) as Array<{ addr_info: Array<{ local: string }> }>;
    expect(addrs[0]?.addr_info.map((a) => a.local)).toContain(ip);
    pods.push({ id, ip, netns: path });
  }
  expect(new Set(pods.map((p) => p.ip)).size).toBe(PODS);
  for (const [i, p] of pods.entries()) {
    const next = pods[(i + 1) % PODS]!;
    inPod(p.netns, ['ping', '-c', '1', '-W', '2', next.ip]);
    inPod(p.netns, ['ping', '-c', '1', '-W', '2', gateway]);
  }
  return pods;
}

/** Stops and removes every pod, then checks sandboxes, netns and host links are gone. */
async function removePods(c: Containerd, host: string, pods: Pod[], hostLinks: string[]): Promise<void> {
  expect(linkNames(host).filter((l) => l.startsWith('veth'))).toHaveLength(PODS);
  for (const p of pods) {
    await c.cri().stopPodSandbox(p.id);
    await c.cri().stopPodSandbox(p.id); // idempotent, as the kubelet expects
    await c.cri().removePodSandbox(p.id);
  }
  expect(await c.cri().listPodSandbox()).toEqual([]);
  for (const p of pods) expect(existsSync(p.netns), p.netns).toBe(false);
  expect(linkNames(host).sort()).toEqual([...hostLinks].sort());
}

async function stopClean(c: Containerd): Promise<void> {
  const left = await c.stop();
  ctd = undefined;
  expect(left).toEqual({ shims: [], mounts: [] });
}

describe('containerd CRI with the reference bridge + host-local (harness check)', () => {
  it(`${PODS} pod sandboxes get addresses, reach each other; removal leaves no links, no IPAM records, no shims, no mounts`, async () => {
    const { c, host } = await startContainerd(24110);
    const prefix = netns!.prefix;
    copyRefPlugins(c, ['loopback', 'bridge', 'host-local', 'portmap']);
    const ipamDir = join(c.dir, 'ipam');
    const conflist = {
      cniVersion: '1.0.0',
      name: `${prefix}-ref`,
      plugins: [
        {
          type: 'bridge',
          bridge: `${prefix}-br`,
          isGateway: true,
          isDefaultGateway: true,
          hairpinMode: true,
          ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: '10.70.0.0/24' }]] },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    };
    writeFileSync(join(c.cniConfDir, '10-ref.conflist'), JSON.stringify(conflist), { mode: 0o644 });
    await c.waitNetworkReady();

    const pods = await runPods(c, prefix, '10.70.0.', '10.70.0.1');
    for (const p of pods) expect(filesMentioning(ipamDir, p.id)).toHaveLength(1);
    await removePods(c, host, pods, [`${prefix}-br`, 'lo']);
    for (const p of pods) expect(filesMentioning(ipamDir, p.id)).toEqual([]);
    await stopClean(c);
  });
});
