// Global set-up of the vitest project "daemon": the plugin suites run again, each plugin
// call through the shim (dist/shim) and one `strand daemon` (dist/strand) on a private
// socket, with STRAND_SHIM_REQUIRE_DAEMON=1 (test/helpers/run-plugin.ts pathEnv), so a
// call the daemon should serve fails loudly instead of passing through the fallback.
// At the end the daemon must have crashed, timed out or lost no request.
import { TestDaemon } from './daemon.ts';

export default async function setup(): Promise<() => Promise<void>> {
  const d = new TestDaemon();
  // Suites run many calls at once (bursts of 50): no BUSY from a cap meant for nodes.
  await d.start({ args: ['--max-requests', '1000', '--max-connections', '4000', '--log-level', 'info'] });
  process.env['STRAND_DAEMON_SOCKET'] = d.socket;
  process.env['STRAND_TEST_VIA'] = 'daemon';
  return async () => {
    await d.stop(10_000);
    const log = d.log;
    const bad = log.split('\n').filter((l) => /: (crashed|timeout|lost)\b/.test(l));
    process.stderr.write(
      `strand daemon (test path): ${
        log
          .split('\n')
          .find((l) => l.includes('stopped ('))
          ?.replace(/^.*stopped /, '') ?? 'no summary'
      }\n`,
    );
    if (bad.length) throw new Error(`strand daemon failed requests during the suite:\n${bad.join('\n')}`);
  };
}
