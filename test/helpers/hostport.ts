// Reachability probes for hostPort tests: a TCP and UDP server inside a pod namespace
// that answers every connection or datagram with its name and the peer address it saw,
// and a one-shot client run inside any namespace. Both are this file run by the pinned
// Node under `ip netns exec` (the test's own process never enters a namespace):
//   node hostport.ts serve <name> <port>                     prints "listening"
//   node hostport.ts tcp|udp <host> <port> [<source port>]   prints one JSON line
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SELF = fileURLToPath(import.meta.url);
const NODE_BIN = join(SELF, '../../../node_modules/.bin/node');

export interface ProbeResult {
  ok: boolean;
  /** The server's name (which pod answered). */
  name?: string;
  /** The source address the server saw (shows masquerading). */
  peer?: string;
  error?: string;
}

/** Starts the server in `ns` on `port` (TCP and UDP, all addresses of both families). */
export function startServer(ns: string, name: string, port: number): Promise<ChildProcess> {
  return startServerWith(['ip', 'netns', 'exec', ns], name, port);
}

/** Starts the server under `prefix`, a command that enters the pod's namespace (nsenter ...). */
export async function startServerWith(prefix: string[], name: string, port: number): Promise<ChildProcess> {
  const argv = [...prefix, NODE_BIN, SELF, 'serve', name, String(port)];
  const srv = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  await new Promise<void>((resolve, reject) => {
    srv.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('listening')) resolve();
    });
    srv.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
    srv.on('exit', (code) => reject(new Error(`probe server (${prefix.join(' ')}) exited ${code}: ${err}`)));
  });
  srv.removeAllListeners('exit');
  return srv;
}

/** One TCP connection or UDP exchange from namespace `ns` (undefined: the test's own) to host:port. */
export function probe(ns: string | undefined, proto: 'tcp' | 'udp', host: string, port: number, sourcePort?: number): Promise<ProbeResult> {
  const args = [SELF, proto, host, String(port), ...(sourcePort ? [String(sourcePort)] : [])];
  const [cmd, argv] = ns ? ['ip', ['netns', 'exec', ns, NODE_BIN, ...args]] : [NODE_BIN, args];
  return new Promise((resolve) => {
    execFile(cmd, argv, { encoding: 'utf8', timeout: 15_000 }, (e, stdout, stderr) => {
      try {
        resolve(JSON.parse(stdout.trim()) as ProbeResult);
      } catch {
        resolve({ ok: false, error: `probe failed: ${e?.message ?? ''} ${stderr}` });
      }
    });
  });
}

function unmapped(a: string | undefined): string {
  return (a ?? '?').replace(/^::ffff:/, '');
}

function serve(name: string, port: number): void {
  const tcp = createServer((s) => {
    s.on('error', () => undefined);
    s.end(`${JSON.stringify({ name, peer: unmapped(s.remoteAddress) })}\n`);
  });
  const udp = createSocket({ type: 'udp6', ipv6Only: false });
  udp.on('message', (_msg, rinfo) => udp.send(JSON.stringify({ name, peer: unmapped(rinfo.address) }), rinfo.port, rinfo.address));
  let ready = 0;
  const up = (): void => {
    if (++ready === 2) process.stdout.write('listening\n');
  };
  tcp.listen({ port, host: '::', ipv6Only: false }, up);
  udp.bind(port, '::', up);
}

const TIMEOUT_MS = 2000;

function report(r: ProbeResult): never {
  process.stdout.write(`${JSON.stringify(r)}\n`);
  process.exit(0);
}

function client(proto: string, host: string, port: number, sourcePort: number | undefined): void {
  setTimeout(() => report({ ok: false, error: 'timeout' }), TIMEOUT_MS).unref();
  const answer = (text: string): never => {
    try {
      const v = JSON.parse(text) as { name: string; peer: string };
      return report({ ok: true, name: v.name, peer: v.peer });
    } catch {
      return report({ ok: false, error: `bad answer ${JSON.stringify(text)}` });
    }
  };
  if (proto === 'tcp') {
    let data = '';
    const s = createConnection({ host, port, ...(sourcePort ? { localPort: sourcePort } : {}) });
    s.setEncoding('utf8').on('data', (d: string) => (data += d));
    s.on('end', () => answer(data.trim()));
    s.on('error', (e) => report({ ok: false, error: e.message }));
    return;
  }
  const u = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  u.on('message', (m) => answer(m.toString('utf8')));
  u.on('error', (e) => report({ ok: false, error: e.message }));
  // resent until answered: a datagram may be lost while the neighbour is resolved
  u.bind(sourcePort ?? 0, () => {
    const send = (): void => u.send('ping', port, host);
    send();
    setInterval(send, 300).unref();
  });
}

if (process.argv[1] === SELF) {
  const [mode, a, b, c] = process.argv.slice(2);
  if (mode === 'serve') serve(a!, Number(b));
  else if (mode === 'tcp' || mode === 'udp') client(mode, a!, Number(b), c ? Number(c) : undefined);
  else {
    process.stderr.write('usage: hostport.ts serve <name> <port> | tcp|udp <host> <port> [<source port>]\n');
    process.exit(2);
  }
}
