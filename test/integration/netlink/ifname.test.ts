// The interface-name rule (lib/addr/ifname.ts) against the kernel: each name goes to the
// kernel in a raw RTM_NEWLINK (past rtnl's own check) inside a fresh namespace. A name
// the rule accepts is created under exactly that name; a name it refuses for the kernel's
// reasons is refused by the kernel; a template or a NUL makes the kernel use another
// name (why strand refuses them); the Unicode spaces libcni refuses are taken by the
// kernel (strand follows libcni there: the runtime would refuse them anyway).
import { describe, expect, it } from 'vitest';
import { ifNameProblem } from '../../../lib/addr/ifname.ts';
import * as rtnl from '../../../lib/netlink/rtnl.ts';
import { useNamespaces } from './env.ts';

const ACCEPTED = ['eth0', 'a'.repeat(15), 'é'.repeat(7), '.a', '...', 'ü', 'eth0\u0001', 'a\ufeff'];
const KERNEL_REFUSES = ['', 'a'.repeat(16), 'é'.repeat(8), '.', '..', 'eth/0', 'eth0:1', 'eth 0', 'eth\t0', 'eth\n0', 'eth\u00a00', 'à', '\u0420'];
const KERNEL_RENAMES = ['eth%d', 'x\u0000y'];
const KERNEL_TEMPLATE_ERRORS = ['%s', 'eth%', '100%'];
const ONLY_LIBCNI_REFUSES = ['eth\u00850', 'eth\u20280', 'eth\u30000'];

describe('interface names: lib/addr/ifname.ts agrees with the kernel', () => {
  const env = useNamespaces();

  /** RTM_NEWLINK of a veth named `name` (peer "peer0"), bypassing rtnl's name check. */
  async function rawNewVeth(name: string): Promise<unknown> {
    try {
      await env.host
        .rtnl()
        .request({ kind: 'link', action: 'new', link: { name, info: { kind: 'veth', peer: { name: 'peer0' } } } }, { create: true, excl: true }, 'test');
      return undefined;
    } catch (e) {
      return e;
    }
  }
  const names = async (): Promise<string[]> => (await rtnl.listLinks(env.host)).map((l) => l.name).filter((n) => n !== 'lo' && n !== 'peer0');

  it.each(ACCEPTED)('%j: accepted by the rule, created under that very name', async (name) => {
    expect(ifNameProblem(name)).toBeUndefined();
    expect(await rawNewVeth(name)).toBeUndefined();
    expect(await names()).toEqual([name]);
  });

  it.each(KERNEL_REFUSES)('%j: refused by the rule and by the kernel', async (name) => {
    expect(ifNameProblem(name)).toBeDefined();
    expect(rtnl.isNetlinkError(await rawNewVeth(name))).toBe(true);
    expect(await names()).toEqual([]);
  });

  it.each(KERNEL_RENAMES)('%j: refused by the rule; the kernel would create another name', async (name) => {
    expect(ifNameProblem(name)).toBeDefined();
    expect(await rawNewVeth(name)).toBeUndefined();
    const made = await names();
    expect(made).toHaveLength(1);
    expect(made[0]).not.toBe(name);
  });

  it.each(KERNEL_TEMPLATE_ERRORS)('%j: refused by the rule (a template) and by the kernel', async (name) => {
    expect(ifNameProblem(name)).toMatch(/template/);
    expect(rtnl.isNetlinkError(await rawNewVeth(name))).toBe(true);
  });

  it.each(ONLY_LIBCNI_REFUSES)('%j: refused by the rule as libcni refuses it; the kernel takes it', async (name) => {
    expect(ifNameProblem(name)).toMatch(/whitespace/);
    expect(await rawNewVeth(name)).toBeUndefined();
    expect(await names()).toEqual([name]);
  });

  it('rtnl refuses what the rule refuses before asking the kernel', async () => {
    const e = await rtnl.newLink(env.host, { name: 'eth%d', info: { kind: 'veth', peer: { name: 'peer0' } } }).catch((x: unknown) => x);
    expect(rtnl.isNetlinkError(e) && e.code).toBe('EINVAL');
    expect(String((e as Error).message)).toMatch(/template/);
    expect(await names()).toEqual([]);
  });
});
