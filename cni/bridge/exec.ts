// Runs the netfilter tools (iptables-save/-restore, nft) the masquerade and MAC
// spoof-check options use, as the reference plugin does. Always an argv array, never a
// shell; input on stdin; the request's PATH with a sane fallback.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { childCommand, nsenterExecError } from '../../lib/cni/invoke.ts';
import type { CmdArgs } from '../../lib/cni/skel.ts';

export interface ToolRun {
  code: number;
  stdout: string;
  stderr: string;
}

const FALLBACK_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function searchPath(env: Record<string, string | undefined>): string {
  const p = env['PATH'];
  return p ? `${p}${delimiter}${FALLBACK_PATH}` : FALLBACK_PATH;
}

/** The full path of `name` on the request's PATH (or the fallback directories), or undefined. */
function findTool(name: string, env: Record<string, string | undefined>): string | undefined {
  for (const dir of searchPath(env).split(delimiter)) {
    if (!dir) continue;
    const f = join(dir, name);
    try {
      accessSync(f, constants.X_OK);
      return f;
    } catch {
      // next
    }
  }
  return undefined;
}

export class ToolError extends Error {
  override readonly name = 'ToolError';
  readonly tool: string;
  readonly code: number;
  readonly stderr: string;

  constructor(tool: string, args: readonly string[], r: ToolRun) {
    super(`${tool} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
    this.tool = tool;
    this.code = r.code;
    this.stderr = r.stderr;
  }
}

/**
 * The tools of one request: found on its PATH, run in its "host" network namespace
 * (under a daemon, the caller's; see childCommand). Nothing here reads process globals.
 */
export interface Tools {
  /** The full path of `name`, or undefined when it is not installed. */
  find(name: string): string | undefined;
  /** Runs `tool args` with `input` on stdin; resolves with its exit code and output. */
  run(tool: string, args: readonly string[], input?: string): Promise<ToolRun>;
  /** Like run but throws ToolError on a non-zero exit. */
  mustRun(tool: string, args: readonly string[], input?: string): Promise<string>;
}

export function toolsFor(a: Pick<CmdArgs, 'env' | 'namespaces'>): Tools {
  const env = a.env;
  const find = (name: string): string | undefined => findTool(name, env);
  const run = (tool: string, args: readonly string[], input?: string): Promise<ToolRun> => {
    const exe = find(tool);
    if (!exe) return Promise.resolve({ code: 127, stdout: '', stderr: `${tool}: not found on PATH` });
    const childEnv = { PATH: searchPath(env), LC_ALL: 'C' };
    const [file, argv] = childCommand(exe, args, a.namespaces, childEnv);
    return new Promise((resolve) => {
      // node:child_process is loaded here, not at start-up: most runs never spawn, and the
      // start-up snapshot of the single executable must not contain it.
      const child = process.getBuiltinModule('node:child_process').spawn(file, argv, { stdio: ['pipe', 'pipe', 'pipe'], env: childEnv });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.on('error', (e) => resolve({ code: 127, stdout, stderr: `${stderr}${e.message}` }));
      child.on('close', (code, signal) => {
        // run through nsenter and not executable: the answer spawn's own error gives
        const execError = file !== exe ? nsenterExecError(exe, code, stderr) : undefined;
        if (execError) resolve({ code: 127, stdout, stderr: execError.message });
        else resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
      });
      child.stdin.on('error', () => {});
      child.stdin.end(input ?? '');
    });
  };
  return {
    find,
    run,
    async mustRun(tool, args, input) {
      const r = await run(tool, args, input);
      if (r.code !== 0) throw new ToolError(tool, args, r);
      return r.stdout;
    },
  };
}
