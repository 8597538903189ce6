// A 3-member etcd cluster for the chaos suite that plugins can reach from inside other
// network namespaces: each member listens on loopback TCP (for this process) and on a
// unix socket in its own directory (a file path works from any network namespace, a
// loopback address does not). Members can be SIGKILLed and restarted with their data.
// Ports come from test/helpers/etcd.ts's freePort (STRAND_TEST_PORTS range).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ETCD_BIN, freePort } from '../helpers/etcd.ts';

export interface ChaosMember {
  name: string;
  dir: string;
  clientPort: number;
  peerPort: number;
  proc?: ChildProcess;
  pid: number;
  exited: boolean;
  log: string[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function status(m: ChaosMember): Promise<{ id: string; leader: string } | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${m.clientPort}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(1500) });
    const j = (await res.json()) as { header?: { member_id?: string }; leader?: string };
    if (!j.header?.member_id || !j.leader || j.leader === '0') return undefined;
    return { id: j.header.member_id, leader: j.leader };
  } catch {
    return undefined;
  }
}

export class ChaosEtcd {
  readonly root: string;
  readonly members: ChaosMember[];
  private readonly token = `chaos-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

  private constructor(root: string, members: ChaosMember[]) {
    this.root = root;
    this.members = members;
  }

  static async start(n = 3): Promise<ChaosEtcd> {
    if (!existsSync(ETCD_BIN)) throw new Error(`etcd binary missing at ${ETCD_BIN} (apt-get install etcd-server)`);
    const root = mkdtempSync(join(tmpdir(), 'strand-chaos-etcd-'));
    const members: ChaosMember[] = [];
    for (let i = 0; i < n; i++) {
      const dir = join(root, `m${i}`);
      mkdirSync(dir);
      members.push({ name: `m${i}`, dir, clientPort: await freePort(), peerPort: await freePort(), pid: -1, exited: true, log: [] });
    }
    const c = new ChaosEtcd(root, members);
    for (const m of members) c.startMember(m, 'new');
    try {
      await c.waitReady(30_000);
    } catch (e) {
      await c.stop();
      throw e;
    }
    return c;
  }

  /** Endpoints for plugins in any network namespace. */
  get endpoints(): string[] {
    return this.members.map((m) => `unix:${this.socket(m)}`);
  }

  /** Endpoints for this process (host namespace). */
  get tcpEndpoints(): string[] {
    return this.members.map((m) => `http://127.0.0.1:${m.clientPort}`);
  }

  private socket(m: ChaosMember): string {
    return join(m.dir, `etcd:${m.clientPort}`);
  }

  startMember(m: ChaosMember, state: 'new' | 'existing'): void {
    // A SIGKILLed member leaves its socket file behind; a fresh bind needs it gone.
    rmSync(this.socket(m), { force: true });
    const peer = (x: ChaosMember): string => `http://127.0.0.1:${x.peerPort}`;
    const args = [
      `--name=${m.name}`,
      `--data-dir=${join(m.dir, 'data')}`,
      // unix socket path relative to cwd: socket paths are limited to 108 bytes
      `--listen-client-urls=http://127.0.0.1:${m.clientPort},unix://etcd:${m.clientPort}`,
      `--advertise-client-urls=http://127.0.0.1:${m.clientPort}`,
      `--listen-peer-urls=${peer(m)}`,
      `--initial-advertise-peer-urls=${peer(m)}`,
      `--initial-cluster=${this.members.map((x) => `${x.name}=${peer(x)}`).join(',')}`,
      `--initial-cluster-state=${state}`,
      `--initial-cluster-token=${this.token}`,
      '--heartbeat-interval=10',
      '--election-timeout=100',
      '--logger=zap',
      '--log-level=warn',
    ];
    const proc = spawn(ETCD_BIN, args, {
      cwd: m.dir,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ETCD_UNSUPPORTED_ARCH: '' },
    });
    m.proc = proc;
    m.pid = proc.pid ?? -1;
    m.exited = false;
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
      m.log.push(d);
      if (m.log.length > 100) m.log.shift();
    });
    proc.on('exit', () => {
      m.exited = true;
    });
  }

  /** Until every live member reports a leader and its socket exists. */
  async waitReady(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      const live = this.members.filter((m) => !m.exited);
      const sts = await Promise.all(live.map((m) => status(m)));
      if (live.length > 0 && sts.every((s) => s) && live.every((m) => existsSync(this.socket(m)))) return;
      if (Date.now() > deadline) {
        throw new Error(`etcd not ready:\n${this.members.map((m) => `${m.name} ${m.exited ? 'EXITED' : 'up'}: ${m.log.join('').slice(-800)}`).join('\n')}`);
      }
      await sleep(50);
    }
  }

  async leader(): Promise<ChaosMember> {
    for (let i = 0; i < 400; i++) {
      for (const m of this.members) {
        if (m.exited) continue;
        const st = await status(m);
        if (!st) continue;
        for (const c of this.members) {
          if (c.exited) continue;
          const cs = await status(c);
          if (cs?.id === st.leader) return c;
        }
      }
      await sleep(50);
    }
    throw new Error('etcd cluster has no leader');
  }

  private async waitExit(m: ChaosMember, ms: number): Promise<boolean> {
    if (m.exited || !m.proc) return true;
    const p = m.proc;
    return Promise.race([new Promise<boolean>((r) => p.once('exit', () => r(true))), sleep(ms).then(() => m.exited)]);
  }

  async kill(m: ChaosMember, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!m.exited && m.pid > 0) process.kill(m.pid, signal);
    await this.waitExit(m, 10_000);
  }

  async restart(m: ChaosMember): Promise<void> {
    if (!m.exited) await this.kill(m);
    this.startMember(m, 'existing');
  }

  /** Stops every member (by PID) and removes the data. Never throws. */
  async stop(): Promise<void> {
    for (const m of this.members) {
      try {
        if (!m.exited && m.pid > 0) process.kill(m.pid, 'SIGTERM');
      } catch {
        // gone
      }
    }
    for (const m of this.members) {
      if (!(await this.waitExit(m, 5000)) && m.pid > 0) {
        try {
          process.kill(m.pid, 'SIGKILL');
        } catch {
          // gone
        }
        await this.waitExit(m, 2000);
      }
    }
    rmSync(this.root, { recursive: true, force: true });
  }
}
