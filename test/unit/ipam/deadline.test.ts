// Fail fast, bounded (issue #14 item 8), below the plugin: the etcd gateway transport
// gives up at once when every endpoint refuses the connection, never waits past the
// call's deadline, and a store with a call deadline fails every later request at once
// after the first that could not reach etcd; skel passes a delegating plugin's call start
// on (STRAND_CALL_STARTED) and ignores an implausible one.
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../../helpers/etcd.ts';
import { parseEtcdConfig } from '../../../ipam/store/etcd-config.ts';
import { httpKv } from '../../../ipam/store/etcd-kv.ts';
import { openEtcdHttpStore } from '../../../ipam/store/etcd.ts';
import { isStoreUnavailable } from '../../../ipam/store/types.ts';
import { CALL_STARTED_ENV, pluginMain, type CmdArgs } from '../../../lib/cni/skel.ts';

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A TCP port that accepts connections and never answers (a hung etcd). */
async function blackHole(): Promise<number> {
  const srv = createServer((sock) => sockets.push(sock));
  servers.push(srv);
  const port = await freePort();
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', () => r()));
  return port;
}

/** A port nothing listens on (of the test's range, STRAND_TEST_PORTS). */
const refusing = freePort;

async function elapsed(p: Promise<unknown>): Promise<{ ms: number; err: unknown }> {
  const t0 = Date.now();
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  return { ms: Date.now() - t0, err };
}

describe('etcd requests of a plugin call', () => {
  it('every endpoint refusing: the request fails at once, not after the request timeout', async () => {
    const cfg = parseEtcdConfig({ endpoints: [`http://127.0.0.1:${await refusing()}`, `http://127.0.0.1:${await refusing()}`], requestTimeout: 5000 });
    const kv = httpKv(cfg);
    const r = await elapsed(kv.range(Buffer.from('/x')));
    kv.close();
    expect((r.err as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
    expect(r.ms).toBeLessThan(1000);
  });

  it('one endpoint hung, one refusing: the hung one is waited for, up to the deadline', async () => {
    const cfg = parseEtcdConfig({ endpoints: [`http://127.0.0.1:${await blackHole()}`, `http://127.0.0.1:${await refusing()}`], requestTimeout: 900 });
    const kv = httpKv(cfg);
    const r = await elapsed(kv.range(Buffer.from('/x')));
    kv.close();
    expect(r.err).toBeInstanceOf(Error);
    expect(r.ms).toBeGreaterThanOrEqual(850);
    expect(r.ms).toBeLessThan(2500);
  });

  it('the call deadline comes before the request timeout; once it passed, no request is even sent', async () => {
    const cfg = parseEtcdConfig({ endpoints: [`http://127.0.0.1:${await blackHole()}`], requestTimeout: 10_000 });
    const kv = httpKv(cfg, { deadline: Date.now() + 400 });
    const r = await elapsed(kv.range(Buffer.from('/x')));
    expect(r.ms).toBeGreaterThanOrEqual(350);
    expect(r.ms).toBeLessThan(2000);
    const again = await elapsed(kv.range(Buffer.from('/x')));
    kv.close();
    expect(String(again.err)).toMatch(/deadline has passed/);
    expect(again.ms).toBeLessThan(50);
  });

  it('a store with a call deadline: after the first request that could not reach etcd, every other fails at once (a hung etcd costs the call one timeout, undo steps included)', async () => {
    const cfg = parseEtcdConfig({ endpoints: [`http://127.0.0.1:${await blackHole()}`], requestTimeout: 600 });
    const store = openEtcdHttpStore(cfg, { deadline: Date.now() + 60_000 });
    const first = await elapsed(store.listAffinities('n'));
    expect(isStoreUnavailable(first.err)).toBe(true);
    expect(first.ms).toBeGreaterThanOrEqual(550);
    const second = await elapsed(store.getAttachment('n', 'c', 'eth0'));
    expect(second.err).toBe(first.err);
    expect(second.ms).toBeLessThan(50);
    await store.close();
    // without a call deadline (the admin CLI, the agent) each request has its own chance
    const free = openEtcdHttpStore(cfg);
    expect((await elapsed(free.listAffinities('n'))).ms).toBeGreaterThanOrEqual(550);
    expect((await elapsed(free.listAffinities('n'))).ms).toBeGreaterThanOrEqual(550);
    await free.close();
  });
});

describe('the call start a delegate counts its deadlines from', () => {
  async function startedWith(env: Record<string, string | undefined>): Promise<number | undefined> {
    let seen: number | undefined;
    const record = async (a: CmdArgs): Promise<void> => {
      seen = a.started;
    };
    await pluginMain(
      { add: async () => ({ cniVersion: '1.1.0' }), del: record, check: record, status: record, gc: record },
      { name: 't', about: 't', parseConfig: (c) => c },
      {
        env: { CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_PATH: '/x', ...env },
        stdin: async () => Buffer.from(JSON.stringify({ cniVersion: '1.1.0', name: 'n', type: 't' })),
        stdout: { write: () => undefined },
        stderr: { write: () => undefined },
      },
    );
    return seen;
  }

  it("the delegating plugin's start when plausible, else now", async () => {
    const t = Date.now() - 1234;
    expect(await startedWith({ [CALL_STARTED_ENV]: String(t) })).toBe(t);
    for (const bad of [String(Date.now() + 60_000), String(Date.now() - 3_600_000), 'soon', '1e3', '']) {
      const before = Date.now();
      const got = (await startedWith({ [CALL_STARTED_ENV]: bad })) as number;
      expect(got, bad).toBeGreaterThanOrEqual(before);
    }
    const before = Date.now();
    expect(await startedWith({})).toBeGreaterThanOrEqual(before);
  });
});
