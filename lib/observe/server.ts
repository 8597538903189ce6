// The observability listener of a long-lived process (the node agent, the daemon): one
// HTTP server with
//   GET /metrics   Prometheus text exposition (lib/observe/metrics.ts)
//   GET /healthz   liveness: 200 "ok", or 503 naming every failing check
//   GET /readyz    readiness: 200 "ok", or 503 with the reason
// Plain HTTP without authentication, so by default it listens on the node's loopback
// (127.0.0.1:9476); docs/metrics.md says how to expose it to a Prometheus.
//
// Bounded like everything long-lived: at most 32 connections, 5 s to send the headers,
// 10 s per request, idle keep-alive connections closed after 5 s; close() ends them all.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Logger } from '../cni/log.ts';
import type { LivenessCheck } from './health.ts';

export const DEFAULT_OBSERVE_ADDRESS = '127.0.0.1:9476';
const MAX_CONNECTIONS = 32;

export interface ListenAddress {
  host: string;
  port: number;
}

export class ListenAddressError extends Error {
  override readonly name = 'ListenAddressError';
}

/**
 * "127.0.0.1:9476", "[::1]:9476", "0.0.0.0:9476" or ":9476" (every address); port 0
 * picks a free one.
 */
export function parseListenAddress(s: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw new ListenAddressError(`invalid listen address ${JSON.stringify(s)} (host:port, [ipv6]:port or :port)`);
  const host = m[1] ?? m[2] ?? '';
  if (host === '') return { host: '::', port };
  if (!isIP(host)) throw new ListenAddressError(`invalid listen address ${JSON.stringify(s)}: ${JSON.stringify(host)} is not an IP address`);
  return { host, port };
}

export interface ObserveSources {
  /** The metrics; absent: /metrics is 404. */
  metrics?: { text(): Promise<string>; readonly contentType: string };
  /** Liveness checks; /healthz fails when any reports a problem. */
  liveness: readonly LivenessCheck[];
  /** Readiness: undefined when ready, else why not. */
  readiness(): string | undefined;
}

export interface ObserveServer {
  /** Where it listens (the port the kernel picked for port 0). */
  readonly address: ListenAddress;
  close(): Promise<void>;
}

function reply(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

async function handle(req: IncomingMessage, res: ServerResponse, src: ObserveSources, log: Logger): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    reply(res, 405, 'method not allowed\n');
    return;
  }
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/healthz' || path === '/livez') {
    const now = Date.now();
    const problems = src.liveness.map((c) => c.problem(now)).filter((p): p is string => p !== undefined);
    if (problems.length) log.warn(`liveness check failed: ${problems.join('; ')}`);
    reply(res, problems.length ? 503 : 200, problems.length ? `unhealthy: ${problems.join('\n')}\n` : 'ok\n');
    return;
  }
  if (path === '/readyz') {
    const why = src.readiness();
    reply(res, why === undefined ? 200 : 503, why === undefined ? 'ok\n' : `not ready: ${why}\n`);
    return;
  }
  if (path === '/metrics' && src.metrics) {
    reply(res, 200, await src.metrics.text(), src.metrics.contentType);
    return;
  }
  reply(res, 404, 'not found (try /metrics, /healthz, /readyz)\n');
}

/** Starts listening; rejects when the address cannot be bound (in use, not local). */
export function startObserveServer(listen: ListenAddress, src: ObserveSources, log: Logger): Promise<ObserveServer> {
  const server: Server = createServer((req, res) => {
    handle(req, res, src, log).catch((e: unknown) => {
      log.error(`${req.method ?? '?'} ${req.url ?? '?'} failed`, e);
      if (!res.headersSent) reply(res, 500, 'internal error\n');
      else res.destroy();
    });
  });
  server.maxConnections = MAX_CONNECTIONS;
  server.headersTimeout = 5000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: listen.host, port: listen.port, exclusive: true }, () => {
      server.off('error', reject);
      server.on('error', (e) => log.error('observability listener', e));
      const a = server.address();
      const address = a && typeof a === 'object' ? { host: a.address, port: a.port } : listen;
      resolve({
        address,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
