// In-process delegates. The single executable is every strand plugin at once, so a
// strand plugin delegating to another strand plugin (strand-bridge -> strand-ipam) can run
// it inside its own process instead of starting a second copy of the executable (tens of
// milliseconds). The delegate still runs through its own pluginMain with the environment,
// stdin bytes and captured stdout/stderr the exec path would give it, so what it sees and
// what it answers are the same; only the process boundary is gone.
//
// lib/cni knows no plugin: the entry point (cmd/main.ts) registers them by type, lazily.
// invoke.ts consults this registry only when the executable found first on CNI_PATH is the
// running executable itself (same inode): a different file there (another version, someone
// else's plugin of that name) is always exec'd, as the runtime's CNI_PATH says.
import type { PluginIO } from './skel.ts';

export type PluginMain = (io: PluginIO) => Promise<number>;

export interface InProcessPlugin {
  /** Loads the plugin's `main` (a lazy import, so a plugin that never delegates never loads it). */
  load(): Promise<PluginMain>;
  /**
   * When this variable is "1" in the delegating plugin's environment, the delegate is
   * exec'd anyway (debugging, or comparing both paths).
   */
  execEnv?: string;
  /**
   * Run in-process whatever file CNI_PATH resolves the type to, not only when it is the
   * running executable. Only for tests running from source (where the running executable
   * is node): never set it in the product.
   */
  anyFile?: boolean;
}

const registry = new Map<string, InProcessPlugin>();
let build: string | undefined;

/**
 * The build string (version-commit) of this executable, as its shims carry it in their
 * marker (native/shim.c): a delegate found on CNI_PATH that is a shim of this build runs
 * in-process too. Unset when running from source.
 */
export function setShimBuild(b: string | undefined): void {
  build = b;
}

export function shimBuild(): string | undefined {
  return build;
}

/** Makes `type` runnable in-process (see the module comment for when it actually is). */
export function registerInProcess(type: string, plugin: InProcessPlugin): void {
  registry.set(type, plugin);
}

/** Removes a registration (tests). */
export function unregisterInProcess(type: string): void {
  registry.delete(type);
}

export function inProcessPlugin(type: string): InProcessPlugin | undefined {
  return registry.get(type);
}
