// `strand daemon` for tests: started from the built executable on a socket in a private
// 0700 temp directory (never /run/strand/cni.sock), in its own process group so that
// stop() (SIGTERM, then SIGKILL) also ends any delegate it had started.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './run-plugin.ts';

export const STRAND = join(repoRoot, 'dist', 'strand');
/** The installed layout: the shim under each plugin name, `strand` beside it. */
export const SHIM_DIR = join(repoRoot, 'dist', 'shim');

export interface DaemonOptions {
  args?: string[];
  env?: Record<string, string>;
  /** An existing directory for the socket (default: a new temp directory). */
  dir?: string;
  /** Run this instead of dist/strand (argv: the daemon's arguments follow). */
  command?: string[];
  /** Run it in this network namespace (a name under /run/netns), as a node's daemon shares the node's. */
  netns?: string;
}

export class TestDaemon {
  readonly dir: string;
  readonly socket: string;
  readonly logFile: string;
  private child: ChildProcess | undefined;
  private output = '';
  private exited: Promise<number | null> | undefined;
  private readonly ownDir: boolean;

  constructor(dir?: string) {
    this.ownDir = dir === undefined;
    this.dir = dir ?? mkdtempSync(join(tmpdir(), `${process.env['STRAND_TEST_PREFIX'] ?? 'st'}-daemon-`));
    this.socket = join(this.dir, 'cni.sock');
    this.logFile = join(this.dir, 'daemon.log');
  }

  get pid(): number {
    if (!this.child?.pid) throw new Error('daemon not running');
    return this.child.pid;
  }

  get log(): string {
    return this.output;
  }

  /** Starts it and waits (bounded) until the socket accepts connections. */
  async start(o: DaemonOptions = {}): Promise<this> {
    const staleIno = existsSync(this.socket) ? statSync(this.socket).ino : undefined;
    // no metrics listener unless asked (many test daemons at once would compete for one port)
    const metrics = (o.args ?? []).some((a) => a.startsWith('--metrics-address')) ? [] : ['--metrics-address', 'off'];
    const argv = [...(o.command ?? [STRAND]), 'daemon', '--socket', this.socket, '--log-level', 'debug', ...metrics, ...(o.args ?? [])];
    if (o.netns) argv.unshift('/usr/bin/nsenter', `--net=/run/netns/${o.netns}`, '--');
    const [cmd, ...rest] = argv;
    const child = spawn(cmd!, rest, {
      env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...o.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    this.child = child;
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (this.output += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.output += d));
    this.exited = new Promise((resolve) => child.on('close', (code) => resolve(code))); // 'close': its output is all read
    const deadline = Date.now() + 30_000;
    // ready = its socket exists (renamed into place once it listens; a stale one of
    // another inode does not count)
    while (!existsSync(this.socket) || (staleIno !== undefined && statSync(this.socket).ino === staleIno)) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`strand daemon did not start:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return this;
  }

  /** The daemon's open descriptors: "fd -> target". */
  fds(): string[] {
    const dir = `/proc/${this.pid}/fd`;
    return readdirSync(dir).flatMap((fd) => {
      try {
        return [`${fd} -> ${readlinkSync(join(dir, fd))}`];
      } catch {
        return []; // closed while listing
      }
    });
  }

  /** Child processes of the daemon (delegates it exec'd). */
  children(): number[] {
    try {
      return readFileSync(`/proc/${this.pid}/task/${this.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  }

  /** Resident set size in bytes. */
  rss(): number {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
    return Number(m?.[1] ?? 0) * 1024;
  }

  /** Sends a signal to the daemon alone. */
  signal(sig: NodeJS.Signals): void {
    this.child?.kill(sig);
  }

  /** Waits for the daemon to exit; resolves with its exit code. */
  async waitExit(timeoutMs = 30_000): Promise<number | null> {
    return Promise.race([this.exited!, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('daemon did not exit')), timeoutMs))]);
  }

  /** SIGTERM, then SIGKILL of its whole process group after `graceMs`; removes the temp directory. */
  async stop(graceMs = 10_000): Promise<void> {
    const child = this.child;
    if (child?.pid && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGTERM');
      } catch {
        // gone
      }
      const timer = setTimeout(() => killGroup(child.pid!), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    if (child?.pid) killGroup(child.pid); // delegates left behind
    this.child = undefined;
    if (this.ownDir) rmSync(this.dir, { recursive: true, force: true });
  }

  /** SIGKILL of the daemon's whole process group (the daemon and what it started). */
  async kill(): Promise<void> {
    if (this.child?.pid) killGroup(this.child.pid);
    await this.exited;
  }

  socketExists(): boolean {
    return existsSync(this.socket);
  }
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // gone
  }
}
