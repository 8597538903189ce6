// Runs the netfilter tools (iptables-save/-restore, iptables -C, nft) the plugins that
// write rules use (strand-bridge's ipMasq and macspoofchk, strand-portmap), as the
// reference plugins do. Always an argv array, never a shell; input on stdin; the
// request's PATH with a sane fallback; a deadline after which the tool is killed.
// Under `strand daemon` the tools are the caller's: looked up and run in its mount and
// network namespaces (childSpawn), so a daemon in a container uses the node's own.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { type ChildSpawn, childSpawn, nsexecError } from '../cni/invoke.ts';
import type { CmdArgs } from '../cni/skel.ts';

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

/** The full path of `name` on `env`'s PATH (or the fallback directories) in this mount namespace, or undefined. */
export function findTool(name: string, env: Record<string, string | undefined>): string | undefined {
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

/** How long a tool may run before it is killed (iptables -w can wait long for the xtables lock). */
const TOOL_TIMEOUT_MS = 60_000;

/** The tools of one request (toolsFor): nothing here reads process globals. */
export interface Tools {
  /** The full path of `name`, or undefined when it is not installed. */
  find(name: string): Promise<string | undefined>;
  /** Runs `tool args` with `input` on stdin; resolves with its exit code and output. */
  run(tool: string, args: readonly string[], input?: string, timeoutMs?: number): Promise<ToolRun>;
  /** Like run but throws ToolError on a non-zero exit. */
  mustRun(tool: string, args: readonly string[], input?: string): Promise<string>;
}

function spawnTool(how: ChildSpawn, env: Record<string, string>, input: string | undefined, what: string, timeoutMs: number): Promise<ToolRun> {
  return new Promise((resolve) => {
    // node:child_process is loaded here, not at start-up: most runs never spawn, and the
    // start-up snapshot of the single executable must not contain it.
    const child = process
      .getBuiltinModule('node:child_process')
      .spawn(how.command, how.args, { stdio: how.stdio, env, ...(how.argv0 ? { argv0: how.argv0 } : {}) });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      stderr += `${what}: killed after ${timeoutMs} ms\n`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: `${stderr}${e.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    child.stdin!.on('error', () => {});
    child.stdin!.end(input ?? '');
  });
}

export function toolsFor(a: Pick<CmdArgs, 'env' | 'namespaces'>): Tools {
  const childEnv = { PATH: searchPath(a.env), LC_ALL: 'C' };
  const ns = a.namespaces;
  // Under a daemon in another mount namespace the lookup happens there too.
  const find = async (name: string): Promise<string | undefined> => {
    if (!ns || ns.mntIsOwn) return findTool(name, a.env);
    const r = await spawnTool(childSpawn('--which', [name], ns), childEnv, undefined, name, TOOL_TIMEOUT_MS);
    return r.code === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
  };
  const run = async (tool: string, args: readonly string[], input?: string, timeoutMs = TOOL_TIMEOUT_MS): Promise<ToolRun> => {
    const exe = await find(tool);
    if (!exe) return { code: 127, stdout: '', stderr: `${tool}: not found on PATH` };
    const how = childSpawn(exe, args, ns);
    const r = await spawnTool(how, childEnv, input, tool, timeoutMs);
    // run through strand-nsexec and not executable: the answer spawn's own error gives
    const execError = how.command !== exe ? nsexecError(exe, r.code, r.stderr) : undefined;
    return execError ? { code: 127, stdout: r.stdout, stderr: execError.message } : r;
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
