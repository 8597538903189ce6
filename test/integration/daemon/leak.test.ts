// The daemon after 10,000 requests (issue 13): resident size <= 150 MiB and not growing,
// no descriptor and no child process left. The requests mix what a node sends, 40 per
// unit of work: a bridge ADD, CHECK and two DELs with strand-ipam in-process, VERSION,
// and failing calls (bad JSON, a missing namespace), 8 units at a time, through the shim.
import { beforeEach, expect, it } from 'vitest';
import { fdsBackTo, quietFds, useWorld, type World } from './harness.ts';

const world = useWorld();
let w: World;
beforeEach(() => {
  w = world();
});

const TOTAL = 10_000;
const PARALLEL = 8;
const MiB = 1024 * 1024;

it(`${TOTAL} requests: RSS <= 150 MiB and flat, descriptors and children back to where they were`, async () => {
  // in the host namespace, as a node's daemon shares the node's
  await w.daemon.start({ netns: w.host, args: ['--log-level', 'warn'] });
  const pods = Array.from({ length: PARALLEL }, (_, i) => w.pod(`l${i}`));
  const conf = w.conf();
  const env = { STRAND_SHIM_REQUIRE_DAEMON: '1' };
  // one unit of work: 40 requests
  const unit = async (slot: number, n: number): Promise<void> => {
    const pod = pods[slot]!;
    const id = `leak-${slot}-${n}`;
    const add = await w.verb('ADD', pod, id, conf, { env });
    if (add.code !== 0) throw new Error(`ADD: ${add.stdout} ${add.stderr}`);
    const check = await w.verb('CHECK', pod, id, { ...conf, prevResult: add.json }, { env });
    if (check.code !== 0) throw new Error(`CHECK: ${check.stdout} ${check.stderr}`);
    for (let i = 0; i < 28; i++) if ((await w.call('strand-bridge', { command: 'VERSION', env }, '')).code !== 0) throw new Error('VERSION failed');
    for (let i = 0; i < 4; i++) {
      if ((await w.verb('ADD', pod, id, '{"cniVersion":', { env })).json?.code !== 6) throw new Error('bad JSON not code 6');
      if ((await w.verb('ADD', `${w.prefix}-gone`, id, conf, { env })).json?.code !== 4) throw new Error('missing netns not code 4');
    }
    for (let i = 0; i < 2; i++) {
      const del = await w.verb('DEL', pod, id, conf, { env });
      if (del.code !== 0) throw new Error(`DEL: ${del.stdout} ${del.stderr}`);
    }
  };
  const batch = async (from: number, to: number): Promise<void> => {
    let next = from;
    await Promise.all(
      Array.from({ length: PARALLEL }, async (_, slot) => {
        for (let n = next++; n < to; n = next++) await unit(slot, n);
      }),
    );
  };

  // warm-up: the first thousand requests (code paths, pools, the heap finding its size)
  const perThousand = 1000 / 40;
  await batch(0, perThousand);
  const base = { fds: await quietFds(w.daemon), children: w.daemon.children() };
  const rss: number[] = [];
  for (let b = 1; b < 10; b++) {
    await batch(b * perThousand, (b + 1) * perThousand);
    rss.push(w.daemon.rss());
  }
  const mib = rss.map((r) => Math.round(r / MiB));
  console.log(`daemon RSS after each 1,000 requests (MiB): ${mib.join(' ')}`);

  expect(await fdsBackTo(w.daemon, base.fds), 'descriptors').toEqual(base.fds);
  expect(w.daemon.children(), 'children').toEqual([]);
  expect(base.children).toEqual([]);
  expect(Math.max(...rss), 'RSS').toBeLessThanOrEqual(150 * MiB);
  // flat: the last thousands no higher than the first ones after warm-up, give or take GC
  const early = Math.max(...rss.slice(0, 3));
  const late = Math.max(...rss.slice(-3));
  expect(late - early, `RSS grew: ${mib.join(' ')} MiB`).toBeLessThanOrEqual(16 * MiB);
  // every attachment released
  expect(w.ipamRecords()).toEqual([]);
  for (const p of pods) expect(w.podLinks(p)).toEqual([]);
  const log = w.daemon.log;
  expect(log).not.toMatch(/: (crashed|timeout|lost|busy)\b/);
}, 1_800_000);
