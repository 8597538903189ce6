// A handle bound to one network namespace: a path (/run/netns/x, /proc/<pid>/ns/net) or
// the namespace this process runs in. Handles are passed explicitly to every operation;
// there is no module-global "current netns".
//
//   const pod = Netns.open(args.netns);    // NetlinkError ENOENT / EINVAL (not a netns)
//   try { await rtnl.getLink(pod, 'eth0') } finally { pod.close() }

import { closeSync, constants as fsConstants, openSync, writeSync } from 'node:fs';
import { native } from '../native/index.ts';
import { errnoOf, fromNative, NetlinkError } from './errors.ts';
import { blockingRoundTrips, NetlinkSocket, nextTurn } from './socket.ts';

export class Netns {
  /** Path of the namespace file, or null for the namespace this process runs in. */
  readonly path: string | null;
  /** How messages name it (the runtime's CNI_NETNS when `path` is a /proc/self/fd alias). */
  private readonly label: string | undefined;
  private sock: NetlinkSocket | undefined;
  private nsFd: number | undefined;

  private constructor(path: string | null, label?: string) {
    this.path = path;
    this.label = label;
  }

  /** The namespace this process runs in (the host's, for a CNI plugin). */
  static current(): Netns {
    return new Netns(null);
  }

  /**
   * A handle on the network namespace at `path`. Throws NetlinkError ENOENT when the
   * path does not exist and EINVAL when it is not a network namespace. `label` is how
   * messages name it (default: `path`).
   */
  static open(path: string, label?: string): Netns {
    let ok: boolean;
    try {
      ok = native().isNetns(path);
    } catch (e) {
      throw fromNative('netns.open', e, path);
    }
    if (!ok) throw new NetlinkError('netns.open', errnoOf('EINVAL'), `${label ?? path} is not a network namespace`);
    return new Netns(path, label);
  }

  /** True when the path still refers to a network namespace (false when it is gone). */
  static exists(path: string): boolean {
    try {
      return native().isNetns(path);
    } catch {
      return false;
    }
  }

  get isCurrent(): boolean {
    return this.path === null;
  }

  /** The namespace's rtnetlink socket, opened on first use and kept until close(). */
  rtnl(): NetlinkSocket {
    if (!this.sock || this.sock.closed) this.sock = NetlinkSocket.open(this.path);
    return this.sock;
  }

  /** A descriptor of the namespace (for IFLA_NET_NS_FD), opened on first use. */
  fd(): number {
    if (this.nsFd === undefined) {
      const p = this.path ?? '/proc/self/ns/net';
      try {
        this.nsFd = openSync(p, 'r');
      } catch (e) {
        throw fromNative('netns.fd', e, p);
      }
    }
    return this.nsFd;
  }

  /** open(2) performed inside the namespace (e.g. /proc/sys/net/... files); caller closes. */
  openFile(path: string, flags: number, mode = 0, op = 'netns.openFile'): number {
    try {
      return native().nsOpenFile(this.path, path, flags, mode);
    } catch (e) {
      throw fromNative(op, e, path);
    }
  }

  /**
   * Writes `data` to `path` opened inside the namespace (e.g. a /proc/sys/net file). The
   * write runs on an addon thread (the kernel may make it wait for its RTNL lock), or in
   * place after useBlockingRoundTrips().
   */
  async writeFile(path: string, data: string, op = 'netns.writeFile'): Promise<void> {
    const fd = this.openFile(path, fsConstants.O_WRONLY, 0, op);
    if (blockingRoundTrips()) {
      try {
        writeSync(fd, data);
      } catch (e) {
        throw fromNative(op, e, path);
      } finally {
        closeSync(fd);
      }
      return;
    }
    try {
      await native().fdWrite(fd, Buffer.from(data));
    } catch (e) {
      throw fromNative(op, e, path);
    } finally {
      closeSync(fd);
      await nextTurn();
    }
  }

  toString(): string {
    return this.label ?? this.path ?? '<current netns>';
  }

  /** Closes the socket and descriptor; call it once the operations using this handle have settled. */
  close(): void {
    this.sock?.close();
    this.sock = undefined;
    if (this.nsFd !== undefined) {
      closeSync(this.nsFd);
      this.nsFd = undefined;
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
