// Runs the netfilter tools (iptables-save/-restore, iptables -C, nft) the plugins that
// write rules use (strand-bridge's ipMasq and macspoofchk, strand-portmap), as the
// reference plugins do. Always an argv array, never a shell; input on stdin; the
// runtime's PATH with a sane fallback; a deadline after which the tool is killed.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

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

/** The full path of `name` on PATH (or the fallback directories), or undefined. */
export function findTool(name: string, env: Record<string, string | undefined> = process.env): string | undefined {
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

/** Runs `tool args` with `input` on stdin; resolves with its exit code and output. */
export function runTool(tool: string, args: readonly string[], input?: string, timeoutMs = TOOL_TIMEOUT_MS): Promise<ToolRun> {
  const exe = findTool(tool);
  if (!exe) return Promise.resolve({ code: 127, stdout: '', stderr: `${tool}: not found on PATH` });
  return new Promise((resolve) => {
    // node:child_process is loaded here, not at start-up: most runs never spawn, and the
    // start-up snapshot of the single executable must not contain it.
    const child = process.getBuiltinModule('node:child_process').spawn(exe, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH: searchPath(process.env), LC_ALL: 'C' },
    });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      stderr += `${tool}: killed after ${timeoutMs} ms\n`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: `${stderr}${e.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}

/** Like runTool but throws ToolError on a non-zero exit. */
export async function mustRunTool(tool: string, args: readonly string[], input?: string): Promise<string> {
  const r = await runTool(tool, args, input);
  if (r.code !== 0) throw new ToolError(tool, args, r);
  return r.stdout;
}
