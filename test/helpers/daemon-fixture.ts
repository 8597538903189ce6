// `strand daemon` from source with test plugins next to the real ones, for what a built
// binary cannot show: a request whose code throws from a timer, leaves a rejection
// unhandled, or never finishes. Run by test/helpers/daemon.ts:
//   node test/helpers/daemon-fixture.ts daemon --socket ...
import type { PluginIO } from '../../lib/cni/skel.ts';
import { main } from '../../daemon/main.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Test plugins: each writes what it saw and exits 0, unless it is made to fail. */
const plugins: Record<string, (io: PluginIO) => Promise<number>> = {
  // answers after a while with its own environment, from several turns of the event loop
  'strand-echo': async (io) => {
    const ms = Number(io.env['STRAND_TEST_SLEEP_MS'] ?? '0');
    for (let i = 0; i < 5; i++) await sleep(ms / 5);
    io.stdout.write(`${JSON.stringify({ PATH: io.env['PATH'], CNI_PATH: io.env['CNI_PATH'], CNI_CONTAINERID: io.env['CNI_CONTAINERID'] })}\n`);
    io.stderr.write(`echo ${io.env['CNI_CONTAINERID']}\n`);
    return 0;
  },
  // an exception thrown from a timer callback: outside the request's promise chain
  'strand-throw': async () => {
    setTimeout(() => {
      throw new Error('thrown from a timer');
    }, 20);
    await new Promise(() => {}); // never settles by itself
    return 0;
  },
  // a promise rejected and never handled
  'strand-reject': async () => {
    await sleep(20);
    void Promise.reject(new Error('rejected, unhandled'));
    await sleep(2000);
    return 0;
  },
};

await main(
  process.argv.slice(3),
  { env: process.env, stdin: async () => Buffer.alloc(0), stdout: process.stdout, stderr: process.stderr },
  {
    run: async (name, io) => plugins[name]!(io),
    isPlugin: (name) => Object.hasOwn(plugins, name),
    warmUp: async () => {},
  },
);
