import { closeSync, mkdtempSync, openSync, readlinkSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { once } from 'node:events';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { devAddonPath, isNativeError, LOCK, native } from '../../../lib/native/index.ts';
import { formatRequest, NETLINK_ROUTE, parseMessages } from '../../../lib/netlink/codec/index.ts';
import { errorOf, nsExecSysctl, useNamespaces } from './env.ts';

const myNetns = (): string => readlinkSync('/proc/thread-self/ns/net');

describe('native addon', () => {
  const env = useNamespaces();

  it('opens netlink sockets and files inside a namespace and always returns to ours', async () => {
    const before = myNetns();
    const podPath = env.set.path(env.podName);
    const fd = native().nlOpen(podPath, 0);
    expect(myNetns()).toBe(before);
    native().close(fd);

    // A /proc/sys/net file opened inside the pod keeps reading the pod's value.
    const hostValue = nsExecSysctl(env.hostName, 'net.ipv4.conf.all.forwarding');
    const podValue = hostValue === '1' ? '0' : '1';
    const w = native().nsOpenFile(podPath, '/proc/sys/net/ipv4/conf/all/forwarding', 1 /* O_WRONLY */, 0);
    writeFileSync(w, podValue);
    closeSync(w);
    const r = native().nsOpenFile(podPath, '/proc/sys/net/ipv4/conf/all/forwarding', 0, 0);
    const buf = Buffer.alloc(16);
    const n = readSync(r, buf);
    closeSync(r);
    expect(buf.toString('utf8', 0, n).trim()).toBe(podValue);
    expect(nsExecSysctl(env.podName, 'net.ipv4.conf.all.forwarding')).toBe(podValue);
    expect(nsExecSysctl(env.hostName, 'net.ipv4.conf.all.forwarding')).toBe(hostValue);
    expect(myNetns()).toBe(before);
  });

  it('throws {code, errno, syscall} errors and stays in our namespace when entering fails', async () => {
    const before = myNetns();
    const e1 = await errorOf(() => native().nlOpen('/etc/hostname', 0));
    expect(isNativeError(e1, 'EINVAL')).toBe(true);
    expect(e1).toMatchObject({ errno: 22, syscall: 'setns' });
    const e2 = await errorOf(() => native().nsOpenFile(`/run/netns/${env.set.prefix}-none`, '/proc/sys/net/ipv4/ip_forward', 0, 0));
    expect(e2).toMatchObject({ code: 'ENOENT', errno: 2, syscall: 'open' });
    const e3 = await errorOf(() => native().nsOpenFile(env.set.path(env.podName), '/proc/sys/net/nope', 0, 0));
    expect(e3).toMatchObject({ code: 'ENOENT', syscall: 'open', path: '/proc/sys/net/nope' });
    const idle = native().nlOpen(null, 0);
    // NLMSG_NOOP without NLM_F_ACK: the kernel answers nothing, so the reply never ends.
    const noop = Buffer.alloc(16);
    noop.writeUInt32LE(16, 0);
    noop.writeUInt16LE(1, 4); // NLMSG_NOOP
    noop.writeUInt16LE(1, 6); // NLM_F_REQUEST
    noop.writeUInt32LE(7, 8);
    expect(await errorOf(() => native().nlRequest(idle, noop, 10))).toMatchObject({ code: 'ETIMEDOUT', syscall: 'poll' });
    native().close(idle);
    expect(await errorOf(() => (native().nlOpen as (p: unknown, q: unknown) => number)(42, 0))).toBeInstanceOf(TypeError);
    expect(myNetns()).toBe(before);
  });

  it('nlRequest: one round trip on an addon thread, resolved with every datagram up to the end of its reply', async () => {
    const fd = native().nlOpen(env.set.path(env.podName), NETLINK_ROUTE);
    try {
      const seq = 77;
      const replies = await native().nlRequest(fd, formatRequest({ kind: 'link', action: 'get', link: { name: 'lo' } }, { ack: true }, seq), 2000);
      const msgs = replies.flatMap((d) => parseMessages(d));
      expect(msgs.map((m) => m.kind)).toEqual(['link', 'ack']);
      expect(msgs.every((m) => m.header.seq === seq)).toBe(true);
      // A dump ends at NLMSG_DONE, however many datagrams it takes.
      const dump = await native().nlRequest(fd, formatRequest({ kind: 'addr', action: 'get', addr: {} }, { dump: true }, seq + 1), 2000);
      expect(
        dump
          .flatMap((d) => parseMessages(d))
          .map((m) => m.kind)
          .at(-1),
      ).toBe('done');
      // Kernel errors are replies too: the codec reads them (ENODEV here).
      const err = await native().nlRequest(fd, formatRequest({ kind: 'link', action: 'get', link: { name: 'nosuch0' } }, { ack: true }, seq + 2), 2000);
      expect(err.flatMap((d) => parseMessages(d))).toMatchObject([{ kind: 'error', errno: 19 }]);
      // Bad arguments throw at once, before anything is queued.
      expect(() => native().nlRequest(fd, Buffer.alloc(8), 10)).toThrow(RangeError);
    } finally {
      native().close(fd);
    }
    // A closed descriptor is a rejection, not a throw.
    await expect(native().nlRequest(fd, formatRequest({ kind: 'link', action: 'get', link: { name: 'lo' } }, { ack: true }, 1), 100)).rejects.toMatchObject({
      code: 'EBADF',
      syscall: 'sendto',
    });
  });

  it('nlRequestSync: the same round trip on the calling thread, errors thrown', () => {
    const fd = native().nlOpen(env.set.path(env.podName), NETLINK_ROUTE);
    try {
      const replies = native().nlRequestSync(fd, formatRequest({ kind: 'link', action: 'get', link: { name: 'lo' } }, { ack: true }, 5), 2000);
      expect(replies.flatMap((d) => parseMessages(d)).map((m) => [m.kind, m.header.seq])).toEqual([
        ['link', 5],
        ['ack', 5],
      ]);
      const noop = Buffer.alloc(16);
      noop.writeUInt32LE(16, 0);
      noop.writeUInt16LE(1, 4); // NLMSG_NOOP without NLM_F_ACK: no answer
      noop.writeUInt16LE(1, 6);
      expect(() => native().nlRequestSync(fd, noop, 10)).toThrow(expect.objectContaining({ code: 'ETIMEDOUT', syscall: 'poll' }));
      expect(() => native().nlRequestSync(fd, noop, 1.5)).toThrow(RangeError);
    } finally {
      native().close(fd);
    }
  });

  it('nlRequest leaves the event loop free while the kernel takes its time', async () => {
    const fd = native().nlOpen(null, NETLINK_ROUTE);
    try {
      const noop = Buffer.alloc(16);
      noop.writeUInt32LE(16, 0);
      noop.writeUInt16LE(1, 4); // NLMSG_NOOP, no NLM_F_ACK: no answer, the request waits out its timeout
      noop.writeUInt16LE(1, 6);
      const t0 = performance.now();
      const pending = native()
        .nlRequest(fd, noop, 400)
        .catch((e: unknown) => e);
      const timerAt = await new Promise<number>((r) => setTimeout(() => r(performance.now() - t0), 5));
      const e = await pending;
      const settledAt = performance.now() - t0;
      expect(e).toMatchObject({ code: 'ETIMEDOUT' });
      // The 5 ms timer fired while the request was still waiting (a blocking call would
      // have held it back for the whole 400 ms).
      expect(timerAt).toBeLessThan(200);
      expect(settledAt).toBeGreaterThanOrEqual(399);
    } finally {
      native().close(fd);
    }
  });

  it('a worker thread torn down with its request in flight: the completion is dropped, nothing crashes', async () => {
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const mod = { exports: {} };
      process.dlopen(mod, workerData.addon);
      const fd = mod.exports.nlOpen(null, 0);
      const noop = Buffer.alloc(16);
      noop.writeUInt32LE(16, 0);
      noop.writeUInt16LE(1, 4);
      noop.writeUInt16LE(1, 6);
      mod.exports.nlRequest(fd, noop, 300).catch(() => {});
      parentPort.postMessage('sent');
    `;
    const w = new Worker(code, { eval: true, workerData: { addon: devAddonPath() } });
    await once(w, 'message');
    await w.terminate();
    await new Promise((r) => setTimeout(r, 500)); // its addon thread times out and finds the environment gone
    const fd = native().nlOpen(null, NETLINK_ROUTE);
    try {
      const replies = await native().nlRequest(fd, formatRequest({ kind: 'link', action: 'get', link: { name: 'lo' } }, { ack: true }, 9), 2000);
      expect(replies.flatMap((d) => parseMessages(d)).map((m) => m.kind)).toEqual(['link', 'ack']);
    } finally {
      native().close(fd);
    }
  });

  it('fdWrite writes off the JavaScript thread (a sysctl inside the pod)', async () => {
    const path = '/proc/sys/net/ipv4/conf/all/forwarding';
    const want = nsExecSysctl(env.podName, 'net.ipv4.conf.all.forwarding') === '1' ? '0' : '1';
    const w = native().nsOpenFile(env.set.path(env.podName), path, 1 /* O_WRONLY */, 0);
    try {
      expect(await native().fdWrite(w, Buffer.from(want))).toBe(1);
    } finally {
      closeSync(w);
    }
    expect(nsExecSysctl(env.podName, 'net.ipv4.conf.all.forwarding')).toBe(want);
    await expect(native().fdWrite(w, Buffer.from('1'))).rejects.toMatchObject({ code: 'EBADF', syscall: 'write' });
  });

  it('tells network namespaces from other files', async () => {
    expect(native().isNetns(env.set.path(env.podName))).toBe(true);
    expect(native().isNetns('/proc/self/ns/net')).toBe(true);
    expect(native().isNetns('/proc/self/ns/mnt')).toBe(false);
    expect(native().isNetns('/etc/hostname')).toBe(false);
    expect(await errorOf(() => native().isNetns('/nonexistent'))).toMatchObject({ code: 'ENOENT', syscall: 'statfs' });
  });

  it('flock: exclusive locks exclude each other, LOCK_NB answers EWOULDBLOCK, unlock releases', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'strand-flock-'));
    try {
      const file = join(dir, 'lock');
      writeFileSync(file, '');
      const a = openSync(file, 'r');
      const b = openSync(file, 'r');
      native().flock(a, LOCK.EX);
      const e = await errorOf(() => native().flock(b, LOCK.EX | LOCK.NB));
      expect(e.code === 'EWOULDBLOCK' || e.code === 'EAGAIN').toBe(true);
      expect(e.errno).toBe(11);
      native().flock(a, LOCK.UN);
      native().flock(b, LOCK.EX | LOCK.NB);
      native().flock(b, LOCK.UN);
      native().flock(a, LOCK.SH);
      native().flock(b, LOCK.SH | LOCK.NB);
      closeSync(a);
      closeSync(b);
      expect(await errorOf(() => native().flock(a, LOCK.EX))).toMatchObject({ code: 'EBADF' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('rejects non-integer and out-of-range numbers instead of truncating them', async () => {
    const n = native() as unknown as Record<string, (...args: unknown[]) => unknown>;
    const fd = openSync('/dev/null', 'r');
    try {
      const cases: Array<[string, unknown[], string]> = [
        ['flock', [fd, 1.5], 'op'],
        ['flock', [fd, Number.NaN], 'op'],
        ['flock', [fd, 16], 'op'],
        ['flock', [1.5, LOCK.SH], 'fd'],
        ['flock', [-1, LOCK.SH], 'fd'],
        ['flock', [2 ** 31, LOCK.SH], 'fd'],
        ['flock', [Number.POSITIVE_INFINITY, LOCK.SH], 'fd'],
        ['close', [fd + 0.5], 'fd'],
        ['nlOpen', [null, 32], 'protocol'],
        ['nlOpen', [null, -0.25], 'protocol'],
        ['nsOpenFile', [null, '/dev/null', 0, 0o10000], 'mode'],
        ['nsOpenFile', [null, '/dev/null', 2 ** 40, 0], 'flags'],
        ['nlRequest', [fd, Buffer.alloc(16), 0.5], 'timeoutMs'],
        ['nlRequest', [-3, Buffer.alloc(16), 10], 'fd'],
        ['fdWrite', [fd + 0.1, Buffer.alloc(1)], 'fd'],
      ];
      for (const [fn, args, arg] of cases) {
        const e = await errorOf(() => n[fn]!(...args));
        expect(e, `${fn}(${args.join(', ')})`).toBeInstanceOf(RangeError);
        expect(e).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
        expect(e.message).toContain(`${arg} must be an integer`);
      }
      // The lock is untouched by all of that: a valid call still works.
      native().flock(fd, LOCK.SH);
      native().flock(fd, LOCK.UN);
    } finally {
      closeSync(fd);
    }
  });

  it('rejects arguments of the wrong type with a TypeError naming the argument', async () => {
    const n = native() as unknown as Record<string, (...args: unknown[]) => unknown>;
    for (const [fn, args, text] of [
      ['flock', ['3', LOCK.SH], 'fd must be a number'],
      ['flock', [3], 'flock(fd, op)'],
      ['nlRequest', [1_000_000, 'not a buffer', 10], 'request must be a Buffer'],
      ['fdWrite', [1_000_000, 'text'], 'data must be a Buffer'],
      ['isNetns', [undefined], 'path must be a string'],
      ['nsOpenFile', [null, '/dev/null', 0n, 0], 'flags must be a number'],
    ] as Array<[string, unknown[], string]>) {
      const e = await errorOf(() => n[fn]!(...args));
      expect(e, fn).toBeInstanceOf(TypeError);
      expect(e).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
      expect(e.message).toContain(text);
    }
  });

  it('names errnos without glibc extensions', async () => {
    expect(await errorOf(() => native().isNetns('/nonexistent'))).toMatchObject({ code: 'ENOENT', errno: 2 });
    expect(await errorOf(() => native().close(1_000_000))).toMatchObject({ code: 'EBADF', errno: 9, syscall: 'close' });
    expect(await errorOf(() => native().nsOpenFile(null, '/etc/hostname/x', 0, 0))).toMatchObject({ code: 'ENOTDIR', errno: 20 });
    expect(await errorOf(() => native().nlOpen(null, 31))).toMatchObject({ code: 'EPROTONOSUPPORT', errno: 93, syscall: 'socket' });
  });
});
