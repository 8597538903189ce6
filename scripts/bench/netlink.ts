// npm run bench:netlink [-- --runs N] [-- --json]      (root)
//
// The interface set-up every pod pays, through strand's netlink layer against the same
// steps through `ip` commands (what a shell-based plugin would spawn):
//   veth pair with the peer created in the pod netns, both ends up, an IPv4 and an IPv6
//   address on the pod end, a default route.
// The netlink sequence runs twice over: with round trips on the calling thread, as a plugin
// process runs them (useBlockingRoundTrips, the figure the goal is about), and on the
// addon's threads, as a resident process (daemon, agent) runs them. All run alternately in
// this one process (same machine load), each on fresh links in the same two namespaces;
// removing the links between runs is not timed. The netlink side includes opening the
// namespace handles and sockets, as a plugin does. Prints the medians (and p90) and the
// ratio; the goal is >= 10x.

import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Netns } from '../../lib/netlink/netns.ts';
import * as rtnl from '../../lib/netlink/rtnl.ts';
import { useBlockingRoundTrips } from '../../lib/netlink/socket.ts';

const GOAL = 10;
const { values } = parseArgs({ options: { runs: { type: 'string', default: '30' }, json: { type: 'boolean', default: false } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 20) throw new Error('--runs must be an integer >= 20');
if (process.getuid?.() !== 0) {
  console.error('bench:netlink needs root (it creates network namespaces)');
  process.exit(1);
}

const tag = `bn${randomBytes(2).toString('hex')}`;
const hostName = `${tag}-host`;
const podName = `${tag}-pod`;
const path = (n: string): string => `/run/netns/${n}`;
const HOST_IF = `${tag}-v`;

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The sequence through strand's rtnetlink layer. */
async function viaNetlink(): Promise<void> {
  const host = Netns.open(path(hostName));
  const pod = Netns.open(path(podName));
  try {
    await rtnl.newLink(host, { name: HOST_IF, info: { kind: 'veth', peer: { name: 'eth0', netns: pod } } });
    await rtnl.setLink(host, HOST_IF, { up: true });
    await rtnl.setLink(pod, 'eth0', { up: true });
    await rtnl.newAddr(pod, { link: 'eth0', address: '10.99.0.2/24' });
    await rtnl.newAddr(pod, { link: 'eth0', address: 'fd99::2/64', nodad: true });
    await rtnl.newRoute(pod, { dst: '0.0.0.0/0', gw: '10.99.0.1' });
  } finally {
    host.close();
    pod.close();
  }
}

/** The same sequence through `ip` commands. */
async function viaIp(): Promise<void> {
  ip('-n', hostName, 'link', 'add', HOST_IF, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', podName);
  ip('-n', hostName, 'link', 'set', HOST_IF, 'up');
  ip('-n', podName, 'link', 'set', 'eth0', 'up');
  ip('-n', podName, 'addr', 'add', '10.99.0.2/24', 'dev', 'eth0');
  ip('-n', podName, 'addr', 'add', 'fd99::2/64', 'dev', 'eth0', 'nodad');
  ip('-n', podName, 'route', 'add', 'default', 'via', '10.99.0.1');
}

/** Checks the result is the same whichever way it was made, then removes it (untimed). */
function verifyAndReset(label: string): void {
  const out = execFileSync('ip', ['-n', podName, '-j', 'addr', 'show', 'dev', 'eth0'], { encoding: 'utf8' });
  const addrs = (JSON.parse(out) as Array<{ flags: string[]; addr_info: Array<{ local: string }> }>)[0];
  const locals = addrs?.addr_info.map((a) => a.local) ?? [];
  const routes = execFileSync('ip', ['-n', podName, '-j', 'route', 'show', 'default'], { encoding: 'utf8' });
  if (!locals.includes('10.99.0.2') || !locals.includes('fd99::2') || !addrs?.flags.includes('UP') || !routes.includes('10.99.0.1')) {
    throw new Error(`${label}: unexpected pod state: ${out} ${routes}`);
  }
  ip('-n', hostName, 'link', 'del', HOST_IF);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const p90 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.9) - 1)] as number;

async function time(fn: () => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

ip('netns', 'add', hostName);
ip('netns', 'add', podName);
try {
  const results = { netlink: [] as number[], netlinkAsync: [] as number[], ip: [] as number[] };
  const blockingWhile = (on: boolean) => async (): Promise<void> => {
    useBlockingRoundTrips(on);
    try {
      await viaNetlink();
    } finally {
      useBlockingRoundTrips(false);
    }
  };
  const subjects = [
    { key: 'netlink' as const, fn: blockingWhile(true) },
    { key: 'netlinkAsync' as const, fn: blockingWhile(false) },
    { key: 'ip' as const, fn: viaIp },
  ];
  // Warm up both paths (module load, page cache), not counted.
  for (const s of subjects) {
    await s.fn();
    verifyAndReset(s.key);
  }
  for (let i = 0; i < runs; i++) {
    const order = i % 2 === 0 ? subjects : [...subjects].reverse();
    for (const s of order) {
      results[s.key].push(await time(s.fn));
      verifyAndReset(s.key);
    }
  }
  const nl = median(results.netlink);
  const ipm = median(results.ip);
  const ratio = ipm / nl;
  const summary = {
    bench: 'netlink',
    runs,
    netlinkMedianMs: Number(nl.toFixed(3)),
    netlinkP90Ms: Number(p90(results.netlink).toFixed(3)),
    netlinkAsyncMedianMs: Number(median(results.netlinkAsync).toFixed(3)),
    netlinkAsyncP90Ms: Number(p90(results.netlinkAsync).toFixed(3)),
    ipMedianMs: Number(ipm.toFixed(3)),
    ipP90Ms: Number(p90(results.ip).toFixed(3)),
    ratio: Number(ratio.toFixed(2)),
    goal: GOAL,
    pass: ratio >= GOAL,
  };
  if (values.json) {
    console.log(JSON.stringify(summary));
  } else {
    console.log(`veth (peer in pod) + 2x up + IPv4 addr + IPv6 addr + default route, ${runs} runs each, alternating`);
    console.log(`  strand netlink : median ${nl.toFixed(2)} ms  p90 ${summary.netlinkP90Ms.toFixed(2)} ms (plugin process: round trips on the calling thread)`);
    console.log(
      `  strand, async  : median ${summary.netlinkAsyncMedianMs.toFixed(2)} ms  p90 ${summary.netlinkAsyncP90Ms.toFixed(2)} ms (resident process: round trips on addon threads)`,
    );
    console.log(`  ip commands    : median ${ipm.toFixed(2)} ms  p90 ${summary.ipP90Ms.toFixed(2)} ms`);
    console.log(`  ratio ip/netlink: ${ratio.toFixed(1)}x (goal >= ${GOAL}x) ${summary.pass ? 'PASS' : 'BELOW GOAL'}`);
  }
} finally {
  spawnSync('ip', ['netns', 'del', hostName]);
  spawnSync('ip', ['netns', 'del', podName]);
}
