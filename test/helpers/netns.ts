import { execFileSync } from 'node:child_process';
import { runPrefix } from './prefix.ts';

// Test-side namespace management. Tests may spawn `ip` (plugins may not): it is the
// independent oracle we check our netlink layer against.

export function ip(args: string[], opts: { ns?: string } = {}): string {
  const full = opts.ns ? ['-n', opts.ns, ...args] : args;
  return execFileSync('ip', full, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function ipJson<T = unknown>(args: string[], opts: { ns?: string } = {}): T {
  const out = ip(['-j', ...args], opts).trim();
  return (out ? JSON.parse(out) : []) as T;
}

export function nsExec(ns: string, cmd: string, args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/**
 * A set of network namespaces for one test, all named with one unique prefix, removed
 * by `cleanup()` (call it from afterEach; it never throws). `path(name)` is the
 * /run/netns path a runtime would pass as CNI_NETNS.
 */
export class NetnsSet {
  readonly prefix: string;
  private readonly created: string[] = [];

  constructor(prefix = runPrefix()) {
    this.prefix = prefix;
  }

  /** Creates `<prefix>-<short>`, brings up its loopback, returns the name. */
  add(short: string): string {
    const name = `${this.prefix}-${short}`;
    ip(['netns', 'add', name]);
    this.created.push(name);
    ip(['link', 'set', 'lo', 'up'], { ns: name });
    return name;
  }

  path(name: string): string {
    return `/run/netns/${name}`;
  }

  /** Deletes every namespace made here and every host link whose name starts with the prefix. */
  cleanup(): void {
    for (const name of this.created.splice(0).reverse()) {
      try {
        ip(['netns', 'del', name]);
      } catch {
        // already gone
      }
    }
    deleteHostLinksWithPrefix(this.prefix);
  }
}

export function deleteHostLinksWithPrefix(prefix: string): void {
  let links: Array<{ ifname: string }> = [];
  try {
    links = ipJson<Array<{ ifname: string }>>(['link', 'show']);
  } catch {
    return;
  }
  for (const l of links) {
    if (!l.ifname.startsWith(prefix)) continue;
    try {
      ip(['link', 'del', l.ifname]);
    } catch {
      // raced with namespace teardown
    }
  }
}
