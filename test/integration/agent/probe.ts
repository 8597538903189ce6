// An established-connection probe, run inside pod namespaces by the agent tests:
//   node probe.ts server <ip> <port>                       TCP echo; prints "listening",
//                                                           then "peer <address>" per connection
//   node probe.ts client <ip> <port> <durationMs> <intervalMs>
// The client keeps one TCP connection, sends a sequence number every interval and prints
// one JSON line: {sent, received, maxGapMs, error?}; maxGapMs is the longest time without
// an echo (from the start, between echoes, and up to the end).
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
    if (error) return report();
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
} else {
  process.stderr.write('usage: probe.ts server <ip> <port> | client <ip> <port> <durationMs> [intervalMs]\n');
  process.exit(2);
}
