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
});
