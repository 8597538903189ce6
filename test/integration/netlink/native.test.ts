import { closeSync, mkdtempSync, openSync, readlinkSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isNativeError, LOCK, native } from '../../../lib/native/index.ts';
import { errorOf, nsExecSysctl, useNamespaces } from './env.ts';

const myNetns = (): string => readlinkSync('/proc/thread-self/ns/net');

describe('native addon', () => {
  const env = useNamespaces();

  it('opens netlink sockets and files inside a namespace and always returns to ours', () => {
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

  it('throws {code, errno, syscall} errors and stays in our namespace when entering fails', () => {
    const before = myNetns();
    const e1 = errorOf(() => native().nlOpen('/etc/hostname', 0));
    expect(isNativeError(e1, 'EINVAL')).toBe(true);
    expect(e1).toMatchObject({ errno: 22, syscall: 'setns' });
    const e2 = errorOf(() => native().nsOpenFile(`/run/netns/${env.set.prefix}-none`, '/proc/sys/net/ipv4/ip_forward', 0, 0));
    expect(e2).toMatchObject({ code: 'ENOENT', errno: 2, syscall: 'open' });
    const e3 = errorOf(() => native().nsOpenFile(env.set.path(env.podName), '/proc/sys/net/nope', 0, 0));
    expect(e3).toMatchObject({ code: 'ENOENT', syscall: 'open', path: '/proc/sys/net/nope' });
    const idle = native().nlOpen(null, 0);
    expect(errorOf(() => native().nlRecv(idle, 10))).toMatchObject({ code: 'ETIMEDOUT' });
    native().close(idle);
    expect(errorOf(() => (native().nlOpen as (p: unknown, q: unknown) => number)(42, 0))).toBeInstanceOf(TypeError);
    expect(myNetns()).toBe(before);
  });

  it('tells network namespaces from other files', () => {
    expect(native().isNetns(env.set.path(env.podName))).toBe(true);
    expect(native().isNetns('/proc/self/ns/net')).toBe(true);
    expect(native().isNetns('/proc/self/ns/mnt')).toBe(false);
    expect(native().isNetns('/etc/hostname')).toBe(false);
    expect(errorOf(() => native().isNetns('/nonexistent'))).toMatchObject({ code: 'ENOENT', syscall: 'statfs' });
  });

  it('flock: exclusive locks exclude each other, LOCK_NB answers EWOULDBLOCK, unlock releases', () => {
    const dir = mkdtempSync(join(tmpdir(), 'strand-flock-'));
    try {
      const file = join(dir, 'lock');
      writeFileSync(file, '');
      const a = openSync(file, 'r');
      const b = openSync(file, 'r');
      native().flock(a, LOCK.EX);
      const e = errorOf(() => native().flock(b, LOCK.EX | LOCK.NB));
      expect(e.code === 'EWOULDBLOCK' || e.code === 'EAGAIN').toBe(true);
      expect(e.errno).toBe(11);
      native().flock(a, LOCK.UN);
      native().flock(b, LOCK.EX | LOCK.NB);
      native().flock(b, LOCK.UN);
      native().flock(a, LOCK.SH);
      native().flock(b, LOCK.SH | LOCK.NB);
      closeSync(a);
      closeSync(b);
      expect(errorOf(() => native().flock(a, LOCK.EX))).toMatchObject({ code: 'EBADF' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('rejects non-integer and out-of-range numbers instead of truncating them', () => {
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
        ['nlRecv', [fd, 0.5], 'timeoutMs'],
      ];
      for (const [fn, args, arg] of cases) {
        const e = errorOf(() => n[fn]!(...args));
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

  it('rejects arguments of the wrong type with a TypeError naming the argument', () => {
    const n = native() as unknown as Record<string, (...args: unknown[]) => unknown>;
    for (const [fn, args, text] of [
      ['flock', ['3', LOCK.SH], 'fd must be a number'],
      ['flock', [3], 'flock(fd, op)'],
      ['nlSend', [0, 'not a buffer'], 'buf must be a Buffer'],
      ['isNetns', [undefined], 'path must be a string'],
      ['nsOpenFile', [null, '/dev/null', 0n, 0], 'flags must be a number'],
    ] as Array<[string, unknown[], string]>) {
      const e = errorOf(() => n[fn]!(...args));
      expect(e, fn).toBeInstanceOf(TypeError);
      expect(e).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
      expect(e.message).toContain(text);
    }
  });

  it('names errnos without glibc extensions', () => {
    expect(errorOf(() => native().isNetns('/nonexistent'))).toMatchObject({ code: 'ENOENT', errno: 2 });
    expect(errorOf(() => native().close(1_000_000))).toMatchObject({ code: 'EBADF', errno: 9, syscall: 'close' });
    expect(errorOf(() => native().nsOpenFile(null, '/etc/hostname/x', 0, 0))).toMatchObject({ code: 'ENOTDIR', errno: 20 });
    expect(errorOf(() => native().nlOpen(null, 31))).toMatchObject({ code: 'EPROTONOSUPPORT', errno: 93, syscall: 'socket' });
  });
});
