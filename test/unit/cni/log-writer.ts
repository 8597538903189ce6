// Child process of log-rotation.test.ts: writes `lines` numbered lines through one
// logger (as one plugin process does) into a shared, rotated log file.
//   node log-writer.ts <file> <writer id> <lines> <maxBytes> <maxFiles>
import { createLogger } from '../../../lib/cni/log.ts';

const [file, id, lines, maxBytes, maxFiles] = process.argv.slice(2) as [string, string, string, string, string];
const log = createLogger({
  name: 'strand-test',
  stderr: process.stderr,
  file,
  level: 'debug',
  context: `ADD writer-${id}/eth0`,
  rotation: { maxBytes: Number(maxBytes), maxFiles: Number(maxFiles) },
});
for (let n = 0; n < Number(lines); n++) log.debug(`line ${n} ${'x'.repeat(n % 50)}`);
