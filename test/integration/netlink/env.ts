// Shared set-up of the netlink integration tests: a fresh "host" and "pod" namespace per
// test (named with the run prefix, removed afterwards even on failure) and Netns handles
// on them. The kernel's view is checked with `ip -j` as the independent oracle.

import { afterEach, beforeEach } from 'vitest';
import { Netns } from '../../../lib/netlink/netns.ts';
import { ip, ipJson, NetnsSet, nsExec } from '../../helpers/netns.ts';

export interface NsEnv {
  set: NetnsSet;
  /** Names (for `ip -n`). */
  hostName: string;
  podName: string;
  host: Netns;
  pod: Netns;
  /** `ip -n host -j ...` */
  ipHost<T = any>(...args: string[]): T;
  /** `ip -n pod -j ...` */
  ipPod<T = any>(...args: string[]): T;
  /** Link names of a namespace per `ip -j link`. */
  linkNames(ns: string): string[];
}

export function useNamespaces(): NsEnv {
  const env = {} as NsEnv;
  beforeEach(() => {
    env.set = new NetnsSet();
    env.hostName = env.set.add('host');
    env.podName = env.set.add('pod');
    env.host = Netns.open(env.set.path(env.hostName));
    env.pod = Netns.open(env.set.path(env.podName));
    env.ipHost = <T>(...args: string[]): T => ipJson<T>(args, { ns: env.hostName });
    env.ipPod = <T>(...args: string[]): T => ipJson<T>(args, { ns: env.podName });
    env.linkNames = (ns: string): string[] =>
      ipJson<Array<{ ifname: string }>>(['link', 'show'], { ns })
        .map((l) => l.ifname)
        .sort();
  });
  afterEach(() => {
    env.host?.close();
    env.pod?.close();
    env.set?.cleanup();
  });
  return env;
}

export { ip, ipJson };

/** Runs `fn` and returns the error it throws or rejects with (fails the test when there is none). */
export async function errorOf(fn: () => unknown): Promise<any> {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error, none was thrown');
}

/** `sysctl -n <name>` run inside a namespace (the oracle for sysctlGet/sysctlSet). */
export function nsExecSysctl(ns: string, name: string): string {
  return nsExec(ns, 'sysctl', ['-n', name]).trim();
}
