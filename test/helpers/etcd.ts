// Starts real etcd servers (Debian's etcd-server binary) for tests and benchmarks:
// loopback only, temp data dirs, random free ports in STRAND_TEST_PORTS (default
// 23000-23999), fast elections (--heartbeat-interval=10 --election-timeout=100), stopped
// by PID. A missing binary fails loudly.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';

export const ETCD_BIN = process.env['ETCD_BIN'] ?? '/usr/bin/etcd';

function portRange(): [number, number] {
  const m = /^(\d+)-(\d+)$/.exec(process.env['STRAND_TEST_PORTS'] ?? '');
  return m ? [Number(m[1]), Number(m[2])] : [23000, 23999];
}

const usedPorts = new Set<number>();

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A random free loopback port in the test range, not handed out before by this process. */
export async function freePort(): Promise<number> {
  const [lo, hi] = portRange();
  for (let i = 0; i < 200; i++) {
    const p = lo + Math.floor(Math.random() * (hi - lo + 1));
    if (usedPorts.has(p)) continue;
    usedPorts.add(p);
    if (await portFree(p)) return p;
  }
  throw new Error(`no free port in ${lo}-${hi}`);
}

export interface EtcdTlsFiles {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate (openssl). */
export function makeTlsFiles(): EtcdTlsFiles {
  const dir = mkdtempSync(join(tmpdir(), 's4-etcd-tls-'));
  const f = (n: string): string => join(dir, n);
  const ssl = (args: string[]): void => {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=strand-test-ca']);
  writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
  writeFileSync(f('client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const who of ['server', 'client']) {
    ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${who}.key`), '-out', f(`${who}.csr`), '-subj', `/CN=strand-${who}`]);
    ssl([
      'x509',
      '-req',
      '-in',
      f(`${who}.csr`),
      '-CA',
      f('ca.crt'),
      '-CAkey',
      f('ca.key'),
      '-CAcreateserial',
      '-out',
      f(`${who}.crt`),
      '-days',
      '2',
      '-extfile',
      f(`${who}.ext`),
    ]);
  }
  return { dir, ca: f('ca.crt'), serverCert: f('server.crt'), serverKey: f('server.key'), clientCert: f('client.crt'), clientKey: f('client.key') };
}

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  proc: ChildProcess;
  pid: number;
  /** True once the process has exited. */
  exited: boolean;
  log: string[];
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** Client URLs of every member. */
  endpoints: string[];
  tls?: EtcdTlsFiles;
  /** The member that is leader now (asks each live member). */
  leader(): Promise<EtcdMember>;
  /** SIGKILLs one member by PID. */
  kill(m: EtcdMember): Promise<void>;
  /** Stops every member by PID and removes the data dirs. Never throws. */
  stop(): Promise<void>;
}

async function httpJson(url: string, body: unknown, tls?: EtcdTlsFiles): Promise<unknown> {
  if (!tls) {
    const res = await fetch(url, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(2000) });
    return res.json();
  }
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      { method: 'POST', ca: readFileSync(tls.ca), cert: readFileSync(tls.clientCert), key: readFileSync(tls.clientKey), timeout: 2000 },
      (res) => {
        let s = '';
        res.setEncoding('utf8').on('data', (d: string) => (s += d));
        res.on('end', () => {
          try {
            resolve(JSON.parse(s));
          } catch (e) {
            reject(e instanceof Error ? e : new Error(String(e)));
          }
        });
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(JSON.stringify(body));
  });
}

async function memberStatus(m: EtcdMember, tls?: EtcdTlsFiles): Promise<{ id: string; leader: string } | undefined> {
  try {
    const j = (await httpJson(`${m.clientUrl}/v3/maintenance/status`, {}, tls)) as { header?: { member_id?: string }; leader?: string };
    if (!j.header?.member_id || !j.leader) return undefined;
    return { id: j.header.member_id, leader: j.leader };
  } catch {
    return undefined;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function waitExit(m: EtcdMember, ms: number): Promise<boolean> {
  if (m.exited) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    m.proc.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/**
 * Starts an etcd cluster of `members` (1 or 3) on loopback and waits until it has a
 * leader that answers. With `tls`, clients must present a certificate (mTLS).
 */
export async function startEtcd(opts: { members?: number; tls?: boolean } = {}): Promise<EtcdCluster> {
  if (!existsSync(ETCD_BIN)) throw new Error(`etcd binary missing at ${ETCD_BIN} (apt-get install etcd-server)`);
  const n = opts.members ?? 1;
  const tls = opts.tls ? makeTlsFiles() : undefined;
  const scheme = tls ? 'https' : 'http';
  const token = `s4-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const specs: Array<{ name: string; client: number; peer: number }> = [];
  for (let i = 0; i < n; i++) specs.push({ name: `m${i}`, client: await freePort(), peer: await freePort() });
  const initialCluster = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peer}`).join(',');
  const members: EtcdMember[] = specs.map((s) => {
    const dataDir = mkdtempSync(join(tmpdir(), `s4-etcd-${s.name}-`));
    const clientUrl = `${scheme}://127.0.0.1:${s.client}`;
    const peerUrl = `http://127.0.0.1:${s.peer}`;
    const args = [
      `--name=${s.name}`,
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${clientUrl}`,
      `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=${initialCluster}`,
      '--initial-cluster-state=new',
      `--initial-cluster-token=${token}`,
      '--heartbeat-interval=10',
      '--election-timeout=100',
      '--logger=zap',
      '--log-level=warn',
    ];
    if (tls) args.push(`--cert-file=${tls.serverCert}`, `--key-file=${tls.serverKey}`, `--trusted-ca-file=${tls.ca}`, '--client-cert-auth');
    const proc = spawn(ETCD_BIN, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ETCD_UNSUPPORTED_ARCH: '' },
    });
    const m: EtcdMember = { name: s.name, clientUrl, peerUrl, dataDir, proc, pid: proc.pid ?? -1, exited: false, log: [] };
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (m.log.length < 200) m.log.push(d);
    });
    proc.on('exit', () => {
      m.exited = true;
    });
    return m;
  });

  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.clientUrl),
    ...(tls ? { tls } : {}),
    async leader() {
      for (let i = 0; i < 200; i++) {
        for (const m of members) {
          if (m.exited) continue;
          const st = await memberStatus(m, tls);
          if (!st || st.leader === '0') continue;
          for (const c of members) {
            if (c.exited) continue;
            const cs = await memberStatus(c, tls);
            if (cs && cs.id === st.leader) return c;
          }
        }
        await sleep(50);
      }
      throw new Error('etcd cluster has no leader');
    },
    async kill(m) {
      if (!m.exited && m.pid > 0) process.kill(m.pid, 'SIGKILL');
      await waitExit(m, 5000);
    },
    async stop() {
      for (const m of members) {
        try {
          if (!m.exited && m.pid > 0) process.kill(m.pid, 'SIGTERM');
        } catch {
          // already gone
        }
      }
      for (const m of members) {
        if (!(await waitExit(m, 5000)) && m.pid > 0) {
          try {
            process.kill(m.pid, 'SIGKILL');
          } catch {
            // gone
          }
          await waitExit(m, 2000);
        }
        rmSync(m.dataDir, { recursive: true, force: true });
      }
      if (tls) rmSync(tls.dir, { recursive: true, force: true });
    },
  };

  // Ready when some member reports a leader; fail with the members' logs otherwise.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const dead = members.find((m) => m.exited);
    if (dead || Date.now() > deadline) {
      const logs = members.map((m) => `${m.name}: ${m.log.join('').slice(-2000)}`).join('\n');
      await cluster.stop();
      throw new Error(`etcd did not start (${dead ? `${dead.name} exited` : 'timeout'}):\n${logs}`);
    }
    const sts = await Promise.all(members.map((m) => memberStatus(m, tls)));
    if (sts.every((s) => s && s.leader !== '0')) return cluster;
    await sleep(30);
  }
}
