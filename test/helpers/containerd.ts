import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CriClient } from './cri/client.ts';
import { repoRoot } from './run-plugin.ts';

// Debian's containerd (+ runc) started by a test: everything under one temp directory
// (root, state, its own gRPC socket, CNI bin and conf dirs), CRI plugin pointed at those
// CNI dirs, a hand-made pause image imported with `ctr`. The daemon runs
//   - in a test "host" network namespace, so the CNI plugins it runs create their
//     bridges and rules there, never on the real host, and
//   - in its own mount namespace (propagation slave: it sees the host's mounts, the host
//     does not see its own), where /var/lib is an overlay whose writes land in the temp
//     dir: the CRI plugin's libcni result cache (/var/lib/cni, not configurable in 1.6)
//     never reaches the host, and neither do the pod netns bind mounts
//     (/var/run/netns/cni-<uuid>) and container rootfs mounts.
// Commands that need those paths (a pod's netns) go through `inMountNs`/`inPod`.
// Stopped by PID; `stop()` reports any shim or mount of ours that was still there.
// Left on the host only while it runs: shim sockets in /run/containerd/s/ (fixed in
// 1.6; stop() removes the directory once empty) and the empty mount-point files of pod
// netns in /run/netns (removed with each sandbox). runc's state goes under the temp dir.

export const CONTAINERD = '/usr/bin/containerd';
export const CTR = '/usr/bin/ctr';
export const PAUSE_IMAGE = 'localhost/strand-test/pause:1';
export const pauseImageTar = join(repoRoot, 'dist', 'test-tools', 'pause-image.tar');

/** Builds the pause image tarball (scripts/image.sh --pause) unless it exists. */
export function buildPauseImage(): string {
  if (!existsSync(pauseImageTar)) {
    execFileSync('bash', [join(repoRoot, 'scripts', 'image.sh'), '--pause', '--out', pauseImageTar, '--name', PAUSE_IMAGE], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  }
  return pauseImageTar;
}

export interface ContainerdOptions {
  /** Network namespace (name under /run/netns) that containerd and its plugins run in. */
  hostNs: string;
  /** Loopback port for the CRI streaming server (must be in the test's port range). */
  streamPort: number;
  /** Parent cgroup for the sandboxes (cgroupfs path), removed on stop. */
  cgroupParent: string;
  /** More environment for containerd, which its CNI plugins inherit (STRAND_DAEMON_SOCKET...). */
  env?: Record<string, string>;
}

/** A private mount namespace that still sees mounts made on the host afterwards. */
const UNSHARE = ['unshare', '--mount', '--propagation', 'slave', '--'];

function shq(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

/** Shell lines that put an overlay on /var/lib whose writes go under `dir`. */
function privateMounts(dir: string): string {
  const up = join(dir, 'varlib-up');
  const work = join(dir, 'varlib-work');
  return [
    'set -e',
    `mkdir -p ${shq(up)} ${shq(work)}`,
    `mount -t overlay overlay -o ${shq(`lowerdir=/var/lib,upperdir=${up},workdir=${work}`)} /var/lib`,
    '',
  ].join('\n');
}

function toml(s: string): string {
  return JSON.stringify(s); // TOML basic strings accept JSON's escapes for our paths
}

export class Containerd {
  readonly dir: string;
  readonly socket: string;
  readonly cniBinDir: string;
  readonly cniConfDir: string;
  readonly logFile: string;
  readonly opts: ContainerdOptions;
  private proc: ChildProcess | undefined;
  private client: CriClient | undefined;

  private constructor(opts: ContainerdOptions) {
    this.opts = opts;
    this.dir = mkdtempSync(join(tmpdir(), 'strand-containerd-'));
    this.socket = join(this.dir, 'containerd.sock');
    this.cniBinDir = join(this.dir, 'cni', 'bin');
    this.cniConfDir = join(this.dir, 'cni', 'net.d');
    this.logFile = join(this.dir, 'containerd.log');
    mkdirSync(this.cniBinDir, { recursive: true });
    mkdirSync(this.cniConfDir, { recursive: true });
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Writes the config and starts containerd; resolves once its CRI service answers. */
  static async start(opts: ContainerdOptions): Promise<Containerd> {
    for (const bin of [CONTAINERD, CTR, '/usr/bin/runc', '/usr/bin/containerd-shim-runc-v2']) {
      if (!existsSync(bin)) throw new Error(`${bin} missing (Debian packages containerd and runc; run scripts/setup.sh)`);
    }
    const c = new Containerd(opts);
    try {
      await c.launch();
    } catch (e) {
      await c.stop().catch(() => {});
      throw e;
    }
    return c;
  }

  private config(): string {
    const d = this.dir;
    return `version = 2
root = ${toml(join(d, 'root'))}
state = ${toml(join(d, 'state'))}
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = ${toml(this.socket)}

[ttrpc]
  address = ${toml(`${this.socket}.ttrpc`)}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${toml(PAUSE_IMAGE)}
  # required on this machine: runc may not lower the OOM score below containerd's
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = ${toml(String(this.opts.streamPort))}
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = ${toml(join(d, 'runc'))}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${toml(this.cniBinDir)}
    conf_dir = ${toml(this.cniConfDir)}
    max_conf_num = 1
`;
  }

  private async launch(): Promise<void> {
    const configFile = join(this.dir, 'config.toml');
    writeFileSync(configFile, this.config());
    const log = openSync(this.logFile, 'a');
    try {
      const script = `${privateMounts(this.dir)}exec ${CONTAINERD} --config ${shq(configFile)}`;
      this.proc = spawn('nsenter', [`--net=/run/netns/${this.opts.hostNs}`, ...UNSHARE, '/bin/sh', '-c', script], {
        stdio: ['ignore', log, log],
        env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...this.opts.env },
      });
    } finally {
      closeSync(log);
    }
    const proc = this.proc;
    proc.on('error', () => {});
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`containerd exited with ${proc.exitCode}:\n${this.logTail()}`);
      if (existsSync(this.socket)) {
        try {
          await this.cri().version();
          return;
        } catch {
          // not serving yet
        }
      }
      if (Date.now() > deadline) throw new Error(`containerd did not come up in 30 s:\n${this.logTail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** The last lines of containerd's log (for failure messages). */
  logTail(lines = 40): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  cri(): CriClient {
    this.client ??= new CriClient(this.socket);
    return this.client;
  }

  /** Runs `ctr -a <socket> -n k8s.io <args>` and returns its stdout. */
  ctr(args: string[], opts: { inHostNs?: boolean } = {}): string {
    const argv = [CTR, '-a', this.socket, '-n', 'k8s.io', ...args];
    const [cmd, full] = opts.inHostNs ? ['nsenter', [`--net=/run/netns/${this.opts.hostNs}`, ...argv]] : [argv[0]!, argv.slice(1)];
    return execFileSync(cmd, full as string[], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
  }

  importImage(tar: string): void {
    this.ctr(['images', 'import', '--all-platforms', tar]);
  }

  /** Waits until the CRI runtime reports NetworkReady (a CNI config was loaded). */
  async waitNetworkReady(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      const st = await this.cri().status();
      const net = st.status?.conditions?.find((c) => c.type === 'NetworkReady');
      if (net?.status) return;
      last = `${net?.reason ?? ''} ${net?.message ?? ''}`;
      if (Date.now() > deadline) throw new Error(`CRI network not ready: ${last}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Shim processes serving this containerd (their command line names our socket). */
  shimPids(): number[] {
    const out: number[] = [];
    for (const p of readdirSync('/proc')) {
      if (!/^\d+$/.test(p)) continue;
      let cmd: string;
      try {
        cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      } catch {
        continue;
      }
      const argv = cmd.split('\0');
      if (argv[0]?.endsWith('containerd-shim-runc-v2') && argv.includes(this.socket)) out.push(Number(p));
    }
    return out;
  }

  /**
   * Container mounts in containerd's mount namespace: anything under the temp dir
   * (rootfs, shm) and pod netns bind mounts. Empty once every sandbox is removed.
   */
  mounts(): string[] {
    const pid = this.runningPid();
    if (pid === undefined) return [];
    let info: string;
    try {
      info = readFileSync(`/proc/${pid}/mountinfo`, 'utf8');
    } catch {
      return [];
    }
    return info
      .split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .filter((m) => m.startsWith(`${this.dir}/`) || /^\/(var\/)?run\/netns\/cni-/.test(m));
  }

  private runningPid(): number | undefined {
    const p = this.proc;
    return p && p.exitCode === null && p.signalCode === null ? p.pid : undefined;
  }

  /** Runs `argv` in containerd's mount namespace (where pod netns paths exist). */
  inMountNs(argv: string[]): string {
    const pid = this.runningPid();
    if (pid === undefined) throw new Error('containerd is not running');
    return execFileSync('nsenter', [`--target=${pid}`, '--mount', '--', ...argv], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
  }

  /** Runs `argv` in a pod's network namespace (a path from PodSandboxStatus). */
  inPod(netnsPath: string, argv: string[]): string {
    return this.inMountNs(['nsenter', `--net=${netnsPath}`, '--', ...argv]);
  }

  /** The command prefix that runs a program in a pod's network namespace (for long-running ones). */
  podCommand(netnsPath: string): string[] {
    const pid = this.runningPid();
    if (pid === undefined) throw new Error('containerd is not running');
    return ['nsenter', `--target=${pid}`, '--mount', '--', 'nsenter', `--net=${netnsPath}`, '--'];
  }

  /**
   * `ctr run --cni`: ctr itself runs the CNI plugins, from the fixed /etc/cni/net.d and
   * /opt/cni/bin, caching in /var/lib/cni. It runs in its own mount namespace where
   * those are private: /etc and /var/lib are overlays writing into the temp dir, /opt a
   * tmpfs with `binDir` bound at /opt/cni/bin, `confFiles` copied to /etc/cni/net.d.
   * And in the host namespace, like containerd, so the plugins' links stay there.
   */
  ctrRunCni(binDir: string, confFiles: string[], args: string[]): string {
    const work = mkdtempSync(join(this.dir, 'ctr-cni-'));
    const script = [
      privateMounts(work),
      `mkdir -p ${shq(join(work, 'etc-up'))} ${shq(join(work, 'etc-work'))}`,
      `mount -t overlay overlay -o ${shq(`lowerdir=/etc,upperdir=${join(work, 'etc-up')},workdir=${join(work, 'etc-work')}`)} /etc`,
      'mkdir -p /etc/cni/net.d',
      ...confFiles.map((f) => `cp ${shq(f)} /etc/cni/net.d/`),
      'mount -t tmpfs tmpfs /opt',
      'mkdir -p /opt/cni/bin',
      `mount --bind ${shq(binDir)} /opt/cni/bin`,
      `exec ${CTR} -a ${shq(this.socket)} -n k8s.io run --cni --runc-root ${shq(join(work, 'runc'))} --fifo-dir ${shq(join(work, 'fifo'))} ${args.map(shq).join(' ')}`,
    ].join('\n');
    return execFileSync('nsenter', [`--net=/run/netns/${this.opts.hostNs}`, ...UNSHARE, '/bin/sh', '-c', script], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 120_000,
    });
  }

  /**
   * Stops containerd by PID (SIGTERM, then SIGKILL after 10 s), then cleans up what a
   * crashed test may have left: our shims (by PID; their mount namespace, with any
   * container mount, goes with them), the cgroup parent, the temp directory. Returns the
   * container mounts present just before the stop and the shims still running after
   * it (both empty when the test removed its sandboxes properly).
   */
  async stop(): Promise<{ shims: number[]; mounts: string[] }> {
    this.client?.close();
    this.client = undefined;
    const mountsBefore = this.mounts();
    const proc = this.proc;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    const leftover = { shims: this.shimPids(), mounts: mountsBefore };
    for (const pid of leftover.shims) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    // (the mounts lived in containerd's mount namespace: gone with it and its shims)
    removeCgroupParent(this.opts.cgroupParent);
    rmSync(this.dir, { recursive: true, force: true });
    // the shim socket directory is fixed in containerd 1.6; drop it once empty
    for (const d of ['/run/containerd/s', '/run/containerd']) {
      try {
        rmdirSync(d);
      } catch {
        // not empty (another containerd) or absent
      }
    }
    return leftover;
  }
}

/** rmdir the (empty) cgroup parent in every cgroup v1 hierarchy or the v2 tree. */
function removeCgroupParent(parent: string): void {
  const rel = parent.replace(/^\/+/, '');
  if (!rel || rel.includes('..')) return;
  const roots = existsSync('/sys/fs/cgroup/cgroup.controllers') ? ['/sys/fs/cgroup'] : readdirSync('/sys/fs/cgroup').map((c) => join('/sys/fs/cgroup', c));
  for (const r of roots) {
    try {
      rmdirSync(join(r, rel));
    } catch {
      // absent, not a hierarchy, or (wrongly) still in use: the test reports leftovers
    }
  }
}

export interface NetnsEtcd {
  endpoint: string;
  pid: number;
  /** `etcdctl <args>` against this member, run inside its namespace (with the client certificate under TLS). */
  etcdctl(args: string[]): string;
  stop(): Promise<void>;
}

/** etcd's server certificate and mutual-TLS flags, and a client certificate for etcdctl. */
export interface NetnsEtcdTls {
  /** server flags, e.g. --cert-file=..., --client-cert-auth */
  flags: string[];
  /** etcdctl's --cacert, --cert, --key */
  client: { ca: string; cert: string; key: string };
}

/**
 * A one-member etcd (Debian etcd-server) inside network namespace `ns` on its loopback,
 * for plugins that containerd runs in that namespace. Data under `dataDir`. Ports are
 * the caller's (inside the namespace: they cannot collide with the host's). With `tls`,
 * the client URL is https and the server takes tls.flags.
 */
export async function startEtcdInNetns(ns: string, dataDir: string, clientPort: number, peerPort: number, tls?: NetnsEtcdTls): Promise<NetnsEtcd> {
  const endpoint = `${tls ? 'https' : 'http'}://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const proc = spawn(
    'nsenter',
    [
      `--net=/run/netns/${ns}`,
      '/usr/bin/etcd',
      '--name=s',
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${endpoint}`,
      `--advertise-client-urls=${endpoint}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=s=${peer}`,
      '--heartbeat-interval=10',
      '--election-timeout=100',
      '--log-level=warn',
      ...(tls?.flags ?? []),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } },
  );
  let log = '';
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
    if (log.length < 20_000) log += d;
  });
  const etcdctl = (args: string[]) =>
    execFileSync(
      'nsenter',
      [
        `--net=/run/netns/${ns}`,
        '/usr/bin/etcdctl',
        `--endpoints=${endpoint}`,
        ...(tls ? [`--cacert=${tls.client.ca}`, `--cert=${tls.client.cert}`, `--key=${tls.client.key}`] : []),
        ...args,
      ],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { PATH: '/usr/bin:/bin', ETCDCTL_API: '3' },
      },
    );
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.kill('SIGTERM');
      await exited;
    }
  };
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`etcd exited with ${proc.exitCode}: ${log}`);
    try {
      etcdctl(['endpoint', 'health']);
      break;
    } catch {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`etcd in ${ns} not healthy after 20 s: ${log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { endpoint, pid: proc.pid!, etcdctl, stop };
}
