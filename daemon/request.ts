// One CNI call inside the daemon: the shim's request becomes the PluginIO a standalone
// plugin process would have (its environment, its stdin, captured stdout and stderr) and
// runs through the same entry point. Nothing of it lives in process globals, so
// concurrent requests with different PATH, CNI_PATH or log settings do not see each
// other's.
import { statSync } from 'node:fs';
import type { PluginIO, RequestNamespaces, RequestObserver } from '../lib/cni/skel.ts';
import { envObject, NetnsState, type Request } from './protocol.ts';

/** Runs plugin `name` (strand-bridge...) with `io` and resolves with its exit status: cmd/main.ts's dispatch. */
export type RunPlugin = (name: string, io: PluginIO) => Promise<number>;

export interface Answer {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}

let ownNetns: string | undefined;
let ownMntns: string | undefined;

function nsId(path: string): string | undefined {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/**
 * The request's namespaces from the descriptors the shim passed: [caller's netns,
 * caller's mount namespace, CNI_NETNS (when the shim could open it)]. Paths through
 * /proc keep them usable for as long as the descriptors stay open (until the request
 * has settled).
 */
function requestNamespaces(req: Request, fds: readonly number[], nsexec: RequestNamespaces['nsexec']): RequestNamespaces {
  const [hostFd, mntFd, podFd] = fds as [number, number, number | undefined];
  const host = `/proc/self/fd/${hostFd}`;
  ownNetns ??= nsId('/proc/self/ns/net');
  ownMntns ??= nsId('/proc/self/ns/mnt');
  const ns: RequestNamespaces = {
    host,
    hostIsOwn: ownNetns !== undefined && nsId(host) === ownNetns,
    mntIsOwn: ownMntns !== undefined && nsId(`/proc/self/fd/${mntFd}`) === ownMntns,
    fds: { host: hostFd, mnt: mntFd },
  };
  if (nsexec) ns.nsexec = nsexec;
  if (req.netnsState === NetnsState.Passed && podFd !== undefined) {
    ns.pod = `/proc/self/fd/${podFd}`;
    ns.fds.pod = podFd;
  } else if (req.netnsState === NetnsState.OpenFailed) {
    ns.podErrno = req.netnsErrno;
  }
  return ns;
}

/** The PluginIO of a request, and its captured output. */
export function requestIO(
  req: Request,
  fds: readonly number[],
  nsexec: RequestNamespaces['nsexec'],
  observer?: RequestObserver,
): { io: PluginIO; answer(exitCode: number): Answer } {
  const out: string[] = [];
  const err: string[] = [];
  const io: PluginIO = {
    env: envObject(req.env),
    stdin: () => Promise.resolve(req.stdin),
    stdout: { write: (s) => void out.push(s) },
    stderr: { write: (s) => void err.push(s) },
    namespaces: requestNamespaces(req, fds, nsexec),
  };
  if (observer) io.observer = observer;
  return {
    io,
    answer: (exitCode) => ({ exitCode, stdout: Buffer.from(out.join(''), 'utf8'), stderr: Buffer.from(err.join(''), 'utf8') }),
  };
}
