// An established-connection probe, run inside pod namespaces by the agent tests:
//   node probe.ts server <ip> <port>                       TCP echo; prints "listening",
//                                                           then "peer <address>" per connection
//   node probe.ts client <ip> <port> <durationMs> <intervalMs>
// The client keeps one TCP connection, sends a sequence number every interval and prints
// one JSON line: {sent, received, maxGapMs, error?}; maxGapMs is the longest time without
// an echo (from the start, between echoes, and up to the end).
//   node probe.ts sink <ip> <port>                         counts the bytes of each
//                                                           connection, answers the count
//   node probe.ts send <ip> <port> <bytes>                 sends that many bytes, prints
//                                                           {sent, counted, ms, error?}
import { createConnection, createServer } from 'node:net';

const [mode, host, portS, durS, intS] = process.argv.slice(2);
const port = Number(portS);

if (mode === 'server') {
  const srv = createServer((s) => {
    process.stdout.write(`peer ${s.remoteAddress ?? '?'}\n`);
    s.on('error', () => undefined);
    s.pipe(s);
  });
  srv.listen(port, host, () => process.stdout.write('listening\n'));
} else if (mode === 'client') {
  const duration = Number(durS);
  const interval = Number(intS ?? '20');
  const t0 = Date.now();
  let last = t0;
  let maxGap = 0;
  let sent = 0;
  let received = 0;
  let error: string | undefined;
  const sock = createConnection({ host, port });
  sock.setNoDelay(true);
  let timer: NodeJS.Timeout | undefined;
  let done = false;
  const report = (): void => {
    process.stdout.write(`${JSON.stringify({ sent, received, maxGapMs: maxGap, ...(error ? { error } : {}) })}\n`);
    sock.destroy();
    process.exit(0);
  };
  // stop sending, then give the echoes still in flight up to a second to come back
  const finish = (): void => {
    if (done) return;
    done = true;
    if (timer) clearInterval(timer);
    maxGap = Math.max(maxGap, Date.now() - last);
    if (error) {
      report();
      return;
    }
    const t = Date.now();
    const wait = setInterval(() => {
      if (received >= sent || Date.now() - t > 1000) {
        clearInterval(wait);
        report();
      }
    }, 5);
  };
  sock.on('connect', () => {
    timer = setInterval(() => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(sent++);
      sock.write(b);
    }, interval);
  });
  let pending = 0;
  sock.on('data', (d: Buffer) => {
    pending += d.length;
    const n = Math.floor(pending / 4);
    if (n > 0) {
      pending -= n * 4;
      received += n;
      if (done) return;
      const now = Date.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
    }
  });
  sock.on('error', (e) => {
    error = e.message;
    if (done) report();
    else finish();
  });
  setTimeout(finish, duration);
} else if (mode === 'sink') {
  const srv = createServer((s) => {
    let n = 0;
    s.on('data', (d: Buffer) => (n += d.length));
    s.on('end', () => s.end(`${n}\n`));
    s.on('error', () => undefined);
  });
  srv.listen(port, host, () => process.stdout.write('listening\n'));
} else if (mode === 'send') {
  const total = Number(durS);
  const t0 = Date.now();
  const sock = createConnection({ host, port });
  let reply = '';
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  let sent = 0;
  const pump = (): void => {
    while (sent < total) {
      const n = Math.min(chunk.length, total - sent);
      sent += n;
      if (!sock.write(chunk.subarray(0, n))) {
        sock.once('drain', pump);
        return;
      }
    }
    sock.end();
  };
  sock.on('connect', pump);
  sock.setEncoding('utf8').on('data', (d: string) => (reply += d));
  const done = (error?: string): void => {
    process.stdout.write(`${JSON.stringify({ sent, counted: Number(reply.trim() || -1), ms: Date.now() - t0, ...(error ? { error } : {}) })}\n`);
    process.exit(0);
  };
  sock.on('end', () => done());
  sock.on('error', (e) => done(e.message));
  setTimeout(() => done('timed out after 60 s'), 60_000).unref();
} else {
  process.stderr.write('usage: probe.ts server <ip> <port> | client <ip> <port> <durationMs> [intervalMs]\n');
  process.exit(2);
}
