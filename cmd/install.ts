// `strand install`: puts strand on a node, as the DaemonSet's container does.
//
//   strand install [--bin-dir DIR] [--conf-dir DIR] [--host-conf-dir DIR]
//                  [--template FILE] [--conf-name NAME] [--source FILE]
//                  [--etcd-endpoints URLS] [--etcd-tls-dir DIR [--etcd-tls-optional]]
//                  [--node-name NAME] [--sleep]
//   strand install --uninstall [--bin-dir DIR] [--conf-dir DIR] [--conf-name NAME] [--flat-record FILE]
//                  [--node-state [--force] [--agent-state-file F] [--pod-mtu-file F] [--log-dir D]]
//
// 1. Reads and checks every input first (binary, template, etcd TLS files, values):
//    a missing or unreadable secret is an error and nothing is written.
//    Every plugin the conflist names (`type`, `ipam.type`) must be in the bin dir or be
//    one strand installs: a chain that cannot work fails the install (and so the init
//    container: the node does not turn Ready). `https://` etcd endpoints need the TLS
//    files (client certificates).
// 2. Copies the shared libraries beside the binary (strand-lib/: libatomic.so.1, found
//    through the binary's RUNPATH $ORIGIN/strand-lib) to <bin-dir>/strand-lib/, then the
//    binary (this single executable, or --source) to <bin-dir>/strand, then the shim
//    (native/shim.c: embedded in the single executable, or --shim; without one, running
//    from source: hardlinks of strand) as strand-bridge, strand-macvlan, strand-ipvlan,
//    strand-ipam, strand-portmap,
//    and `loopback` (which container runtimes run for every pod) when the bin dir has
//    none or its loopback is strand's; a loopback of someone else's is never replaced.
//    What it installed is recorded in <bin-dir>/.strand-installed.json (atomically).
//    Each shim hands its calls to `strand daemon` when that runs and falls back to
//    <bin-dir>/strand otherwise; `strand` is in place before any shim that falls back to
//    it. Without a shim (running from source, no --shim) the plugin names are hardlinks
//    of strand, as before the daemon.
// 3. Copies the etcd TLS files (ca.crt, tls.crt, tls.key of a kubernetes.io/tls Secret
//    plus its CA) to <conf-dir>/strand-etcd/, mode 0600 in a 0700 directory. With
//    --etcd-tls-optional a TLS directory holding none of the three files (an optional
//    Secret that does not exist) means no TLS; one holding only some is an error.
// 4. Writes the conflist filled from the template to <conf-dir>/<conf-name>, mode 0644,
//    last: a runtime that sees the conflist finds everything it refers to.
// Every file is written by temp file + rename and only when it changed, so a re-run
// is a no-op. With --sleep it then waits for SIGTERM (a DaemonSet container).
// --uninstall removes what install wrote: first it undoes flat mode's uplink takeover when
// its record exists (agent/flat.ts; a failed restore removes nothing), then the conflist,
// the files recorded (a shared name such as loopback only while it is still strand's
// file), strand-lib/, the TLS files; then it lists the node state it leaves (bridges,
// VXLAN device, agent routes, IPAM records: cmd/install/report.ts). With --node-state it
// removes that node state first, while the conflist and the TLS files still say how to
// reach the IPAM store (cmd/install/node-state.ts), and refuses, removing nothing (the
// flat takeover included), while pods use strand's network or the agent runs, unless
// --force. Install warns when another network configuration sorts before strand's (the
// runtime would use that one).
import { existsSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { isSea } from 'node:sea';
import { parseArgs } from 'node:util';
import { DEFAULT_TAKEOVER_RECORD } from '../agent/config.ts';
import type { PluginIO } from '../lib/cni/skel.ts';
import {
  BINARY_NAMES,
  ensureDir,
  InstallError,
  installBinaries,
  installLibraries,
  installShims,
  isExecutable,
  isStrandFile,
  LIB_DIR,
  MANIFEST_NAME,
  namesToInstall,
  readManifest,
  removeIfPresent,
  removeLibraries,
  SHARED_NAMES,
  SHIM_MARKER,
  writeFileAtomic,
  writeManifest,
  type Outcome,
} from './install/files.ts';
import { configsBefore, leftovers, nodeStateOf, precedenceWarning } from './install/report.ts';
import { DEFAULT_AGENT_STATE_FILE, DEFAULT_LOG_DIR, DEFAULT_POD_MTU_FILE_PATH } from './install/node-state.ts';
import { type Conflist, fillTemplate, parseEndpoints, placeholdersIn, TemplateError, type TemplateValues } from './install/template.ts';

/** The single executable's asset holding the shim (scripts/build.sh). */
const SHIM_ASSET = 'strand-shim';

const USAGE = `usage: strand install [--bin-dir DIR] [--conf-dir DIR] [--host-conf-dir DIR]
                      [--template FILE] [--conf-name NAME] [--source FILE] [--shim FILE]
                      [--etcd-endpoints URLS] [--etcd-tls-dir DIR [--etcd-tls-optional]]
                      [--node-name NAME] [--sleep]
       strand install --uninstall [--bin-dir DIR] [--conf-dir DIR] [--conf-name NAME] [--flat-record FILE]
                      [--node-state [--force] [--agent-state-file F] [--pod-mtu-file F] [--log-dir D]]

  --bin-dir        CNI plugin directory (default /opt/cni/bin)
  --conf-dir       CNI config directory to write to (default /etc/cni/net.d)
  --host-conf-dir  the same directory as the plugins on the host see it, for TLS paths
                   in the conflist (default: --conf-dir)
  --template       conflist template (JSON with \${NODE_NAME}, \${ETCD_ENDPOINTS},
                   \${ETCD_CA}, \${ETCD_CERT}, \${ETCD_KEY}; default /etc/strand/conflist.template)
  --conf-name      file name of the conflist (default 10-strand.conflist)
  --source         binary to install (default: this single executable)
  --shim           the CNI shim to install under the plugin names (default: the one
                   embedded in this single executable)
  --etcd-endpoints comma-separated etcd URLs (env STRAND_ETCD_ENDPOINTS)
  --etcd-tls-dir   directory with ca.crt, tls.crt, tls.key (env STRAND_ETCD_TLS_DIR)
  --etcd-tls-optional  no TLS when that directory holds none of the three files
  --node-name      node name (env K8S_NODE_NAME, NODENAME; default: hostname)
  --sleep          after installing, wait for SIGTERM (DaemonSet)
  --uninstall      remove what install put there: the conflist, the binaries it recorded
                   (loopback only while it is strand's), strand-lib/ and the TLS files,
                   then list what strand made on the node that stays (bridges, routes,
                   IPAM state)
  --flat-record    with --uninstall: first undo the flat-mode uplink takeover recorded
                   there (default /run/strand/flat.json; nothing to do when absent)
  --node-state     with --uninstall: first remove that too: the conflist's bridges, the
                   agent's VXLAN device and routes, strand's masquerade and hostPort
                   rules, this node's IPAM state (pending releases completed, empty
                   blocks released, the node record removed; the local store's files),
                   the pod MTU and agent state files, strand's CNI logs. Refuses, and
                   removes nothing, while pods use strand's network here or the agent
                   runs (delete the workloads and the DaemonSet first)
  --force          with --node-state: go on anyway, removing the pods' network and
                   releasing their addresses
  --agent-state-file  the agent's state file (default ${DEFAULT_AGENT_STATE_FILE})
  --pod-mtu-file   the agent's pod MTU file (default ${DEFAULT_POD_MTU_FILE_PATH})
  --log-dir        strand's CNI log directory (default ${DEFAULT_LOG_DIR})

Install lays down loopback (run by container runtimes for every pod) when the bin dir
has none, never replacing one of someone else's, and fails when the conflist names a
plugin (type or ipam.type) that neither the bin dir has nor strand installs, or when
the etcd endpoints use https:// without TLS files. It warns when another network
configuration in the conf dir sorts before --conf-name: runtimes use the first one, so
pods would not get strand's network.
`;

const TLS_SUBDIR = 'strand-etcd';
const TLS_FILES = { ETCD_CA: 'ca.crt', ETCD_CERT: 'tls.crt', ETCD_KEY: 'tls.key' } as const;

interface Options {
  binDir: string;
  confDir: string;
  hostConfDir: string;
  template: string;
  confName: string;
  source: string | undefined;
  shim: string | undefined;
  etcdEndpoints: string | undefined;
  etcdTlsDir: string | undefined;
  etcdTlsOptional: boolean;
  nodeName: string | undefined;
  sleep: boolean;
  uninstall: boolean;
  flatRecord: string;
  nodeState: boolean;
  force: boolean;
  agentStateFile: string;
  podMtuFile: string;
  logDir: string;
}

function parseOptions(argv: string[], env: PluginIO['env']): Options {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      'bin-dir': { type: 'string' },
      'conf-dir': { type: 'string' },
      'host-conf-dir': { type: 'string' },
      template: { type: 'string' },
      'conf-name': { type: 'string' },
      source: { type: 'string' },
      shim: { type: 'string' },
      'etcd-endpoints': { type: 'string' },
      'etcd-tls-dir': { type: 'string' },
      'etcd-tls-optional': { type: 'boolean' },
      'node-name': { type: 'string' },
      sleep: { type: 'boolean' },
      uninstall: { type: 'boolean' },
      'flat-record': { type: 'string' },
      'node-state': { type: 'boolean' },
      force: { type: 'boolean' },
      'agent-state-file': { type: 'string' },
      'pod-mtu-file': { type: 'string' },
      'log-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (positionals.length > 0) throw new InstallError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const confDir = values['conf-dir'] ?? '/etc/cni/net.d';
  const confName = values['conf-name'] ?? '10-strand.conflist';
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*\.(conflist|conf|json)$/.test(confName)) {
    throw new InstallError(`--conf-name ${JSON.stringify(confName)}: a plain file name ending in .conflist`);
  }
  return {
    binDir: values['bin-dir'] ?? '/opt/cni/bin',
    confDir,
    hostConfDir: values['host-conf-dir'] ?? confDir,
    template: values.template ?? '/etc/strand/conflist.template',
    confName,
    source: values.source,
    shim: values.shim,
    etcdEndpoints: values['etcd-endpoints'] ?? (env['STRAND_ETCD_ENDPOINTS'] || undefined),
    etcdTlsDir: values['etcd-tls-dir'] ?? (env['STRAND_ETCD_TLS_DIR'] || undefined),
    etcdTlsOptional: values['etcd-tls-optional'] ?? false,
    nodeName: values['node-name'] ?? (env['K8S_NODE_NAME'] || env['NODENAME'] || undefined),
    sleep: values.sleep ?? false,
    uninstall: values.uninstall ?? false,
    flatRecord: values['flat-record'] ?? DEFAULT_TAKEOVER_RECORD,
    nodeState: values['node-state'] ?? false,
    force: values.force ?? false,
    agentStateFile: values['agent-state-file'] ?? DEFAULT_AGENT_STATE_FILE,
    podMtuFile: values['pod-mtu-file'] ?? DEFAULT_POD_MTU_FILE_PATH,
    logDir: values['log-dir'] ?? DEFAULT_LOG_DIR,
  };
}

function readInput(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new InstallError(`cannot read ${what} ${path}: ${code}`, { cause: e });
  }
}

/** Everything install will write, read and checked before anything is written. */
interface Plan {
  source: string;
  /** The shim to install under the plugin names (undefined: hardlinks of strand). */
  shim: Buffer | undefined;
  /** Names to put in the bin dir (strand and its hardlinks). */
  binaries: string[];
  tls: Array<{ name: string; data: Buffer }>;
  conflist: Buffer;
  warnings: string[];
}

/** Every plugin a conflist runs: each `type`, and each `ipam.type` (delegated from CNI_PATH). */
export function pluginTypes(c: Conflist): Array<{ type: string; where: string }> {
  const out: Array<{ type: string; where: string }> = [];
  c.plugins.forEach((p, i) => {
    out.push({ type: p.type, where: `plugins[${i}].type` });
    const ipam = p['ipam'] as { type?: unknown } | undefined;
    if (ipam && typeof ipam.type === 'string' && ipam.type !== '') out.push({ type: ipam.type, where: `plugins[${i}].ipam.type` });
  });
  return out;
}

/** Fails unless every plugin the conflist runs will be in `binDir`: installed now, or there already. */
function checkChain(c: Conflist, binDir: string, installing: readonly string[]): void {
  for (const { type, where } of pluginTypes(c)) {
    if (type.includes('/') || type === '.' || type === '..') throw new InstallError(`the conflist's ${where} ${JSON.stringify(type)} is not a plugin name`);
    if (installing.includes(type) || isExecutable(join(binDir, type))) continue;
    throw new InstallError(
      `the conflist needs plugin ${JSON.stringify(type)} (${where}), which is not in ${binDir} and not one strand installs (${installing.join(', ')}): ` +
        'install it there or change the template',
    );
  }
}

function plan(o: Options): Plan {
  let source = o.source;
  if (source === undefined) {
    if (!isSea()) throw new InstallError('not running as the strand single executable: pass --source <path to dist/strand>');
    source = process.execPath;
  }
  try {
    if (!statSync(source).isFile()) throw new InstallError(`--source ${source} is not a regular file`);
  } catch (e) {
    if (e instanceof InstallError) throw e;
    throw new InstallError(`cannot read binary ${source}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, { cause: e });
  }

  const template = readInput('template', o.template).toString('utf8');
  const used = placeholdersIn(template);
  const values: TemplateValues = { NODE_NAME: o.nodeName ?? hostname() };
  if (o.etcdEndpoints !== undefined) values.ETCD_ENDPOINTS = parseEndpoints(o.etcdEndpoints);

  const tls: Plan['tls'] = [];
  const tlsDir = o.etcdTlsDir;
  const absent = (f: string) => tlsDir !== undefined && !existsSync(join(tlsDir, f));
  if (tlsDir !== undefined && !(o.etcdTlsOptional && Object.values(TLS_FILES).every(absent))) {
    for (const [key, file] of Object.entries(TLS_FILES) as Array<[keyof typeof TLS_FILES, string]>) {
      const data = readInput('etcd TLS file', join(tlsDir, file));
      if (!data.includes('-----BEGIN ')) throw new InstallError(`etcd TLS file ${join(tlsDir, file)} is not PEM`);
      tls.push({ name: file, data });
      values[key] = join(o.hostConfDir, TLS_SUBDIR, file);
    }
    if (!used.has('ETCD_CA')) throw new InstallError('--etcd-tls-dir given but the template has no ${ETCD_CA}/${ETCD_CERT}/${ETCD_KEY}');
  }
  // https:// without client certificates cannot pass etcd's --client-cert-auth (the
  // manifests' default): stop here, before a node gets a network that cannot allocate.
  const endpoints = Array.isArray(values.ETCD_ENDPOINTS) ? values.ETCD_ENDPOINTS : [];
  const warnings: string[] = [];
  if (used.has('ETCD_CA') && tls.length === 0 && endpoints.some((e) => e.startsWith('https://'))) {
    const where = tlsDir === undefined ? 'no --etcd-tls-dir (STRAND_ETCD_TLS_DIR) given' : `${tlsDir} holds none of ca.crt, tls.crt, tls.key`;
    throw new InstallError(`etcd endpoints use https but ${where}: create the Secret strand-etcd-tls (strand certs writes it, docs/install.md)`);
  }
  if (tls.length > 0 && endpoints.length > 0 && endpoints.every((e) => e.startsWith('http://'))) {
    warnings.push('warning: etcd TLS files given but every etcd endpoint is plain http://: the plugins will not use them');
  }
  const { conflist, text } = fillTemplate(template, values);
  const binaries = namesToInstall(o.binDir);
  checkChain(conflist, o.binDir, binaries);
  return { source, shim: shimBytes(o), binaries, tls, conflist: Buffer.from(text), warnings };
}

/** The shim: --shim, else the single executable's embedded copy, else none (from source). */
function shimBytes(o: Options): Buffer | undefined {
  let shim: Buffer | undefined;
  if (o.shim !== undefined) shim = readInput('shim', o.shim);
  else if (isSea()) shim = Buffer.from((process.getBuiltinModule('node:sea') as typeof import('node:sea')).getRawAsset(SHIM_ASSET) as ArrayBuffer);
  if (shim && !shim.includes(SHIM_MARKER)) throw new InstallError(`${o.shim ?? 'the embedded shim'} is not a strand shim`);
  return shim;
}

function install(o: Options, log: (s: string) => void): void {
  const p = plan(o);
  for (const w of p.warnings) log(w);
  ensureParent(o.binDir);
  ensureParent(o.confDir);
  const report = (what: string, r: Outcome) => log(`${what}: ${r}`);
  const libs = installLibraries(p.source, o.binDir);
  if (libs.names.length > 0) report(`libraries ${libs.names.join(', ')} in ${join(o.binDir, LIB_DIR)}`, libs.outcome);
  else if (o.source === undefined) log(`warning: no ${LIB_DIR}/ beside ${p.source}: the plugins need libatomic.so.1 from the node`);
  if (p.shim) {
    // strand first: a shim never finds its fallback missing
    report(`binaries in ${o.binDir}`, installBinaries(p.source, o.binDir, ['strand']));
    report(
      `shims in ${o.binDir}`,
      installShims(
        p.shim,
        o.binDir,
        p.binaries.filter((n) => n !== 'strand'),
      ),
    );
  } else {
    report(`binaries in ${o.binDir}`, installBinaries(p.source, o.binDir, p.binaries));
  }
  report(join(o.binDir, MANIFEST_NAME), writeManifest(o.binDir, { files: p.binaries }));
  for (const n of SHARED_NAMES) if (!p.binaries.includes(n)) log(`${join(o.binDir, n)} is not strand's: left as it is`);
  if (p.tls.length > 0) {
    const dir = join(o.confDir, TLS_SUBDIR);
    ensureDir(dir, 0o700);
    for (const f of p.tls) report(join(dir, f.name), writeFileAtomic(join(dir, f.name), f.data, 0o600));
  }
  report(join(o.confDir, o.confName), writeFileAtomic(join(o.confDir, o.confName), p.conflist, 0o644));
  // TLS files of an earlier install go only after the conflist stopped naming them.
  if (p.tls.length === 0 && removeTlsDir(o.confDir)) log(`removed ${join(o.confDir, TLS_SUBDIR)} (no TLS configured)`);
  const shadowed = precedenceWarning(o.confDir, o.confName);
  if (shadowed !== undefined) log(shadowed);
}

function ensureParent(dir: string): void {
  try {
    if (!statSync(dir).isDirectory()) throw new InstallError(`${dir} is not a directory`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    ensureDir(dir, 0o755);
  }
}

/** Removes our TLS files and then their directory if that left it empty. */
function removeTlsDir(confDir: string): boolean {
  const dir = join(confDir, TLS_SUBDIR);
  let any = false;
  for (const f of Object.values(TLS_FILES)) any = removeIfPresent(join(dir, f)) || any;
  try {
    rmdirSync(dir); // only an empty directory: files someone else put there stay
    any = true;
  } catch {
    // absent or not empty
  }
  return any;
}

/** Undoes flat mode's uplink takeover (strand agent --restore) when its record exists. */
async function restoreFlat(record: string, log: (s: string) => void): Promise<void> {
  if (!existsSync(record)) return;
  const [{ restore }, { Netns }] = await Promise.all([import('../agent/flat.ts'), import('../lib/netlink/netns.ts')]);
  const ns = Netns.current();
  const say = (m: string): void => log(m);
  try {
    const r = await restore(ns, record, { log: { debug: () => {}, info: say, warn: say, error: say } });
    if (r.warnings.length) log(`flat takeover undone with ${r.warnings.length} warning(s)`);
  } catch (e) {
    throw new InstallError(`cannot undo the flat-mode takeover recorded in ${record} (nothing removed): ${e instanceof Error ? e.message : String(e)}`, {
      cause: e,
    });
  } finally {
    ns.close();
  }
}

/** Returns the exit status: 1 when --node-state refused or could not remove everything. */
async function uninstall(o: Options, log: (s: string) => void, env: PluginIO['env'], restoreFlatTakeover: () => Promise<void>): Promise<number> {
  const conflist = join(o.confDir, o.confName);
  let installed = '';
  try {
    installed = readFileSync(conflist, 'utf8'); // read first: it names the node state to report
  } catch {
    // not installed (or already uninstalled)
  }
  let status = 0;
  if (o.nodeState) {
    // before the files: the conflist and the TLS files say how to reach the IPAM store
    let parsed: Record<string, unknown> = {};
    try {
      parsed = installed ? (JSON.parse(installed) as Record<string, unknown>) : {};
    } catch {
      log(`warning: ${conflist} is not JSON: only links, routes, rules and files found by name are removed`);
    }
    const { removeNodeState } = await import('./install/node-state.ts');
    const r = await removeNodeState({
      conflist: parsed,
      beforeRemoval: restoreFlatTakeover,
      env,
      force: o.force,
      agentStateFile: o.agentStateFile,
      podMtuFile: o.podMtuFile,
      logDir: o.logDir,
      log,
    });
    if (r.refused.length && !o.force) {
      for (const x of r.refused) log(`still in use: ${x}`);
      log('refused: nothing removed (delete the pods and the DaemonSet first, or --force)');
      return 1;
    }
    for (const x of r.failed) log(`not removed: ${x}`);
    if (r.failed.length) status = 1;
  }
  // the conflist first: a runtime never sees a network whose plugins are gone
  if (removeIfPresent(conflist)) log(`removed ${conflist}`);
  // Shared names first (whether they are strand's is judged against `strand`), and only
  // while they are strand's file; strand's own names in any case.
  const recorded = readManifest(o.binDir)?.files ?? [];
  const shared = [...new Set([...SHARED_NAMES, ...recorded])].filter((n) => !(BINARY_NAMES as readonly string[]).includes(n));
  for (const n of shared) if (isStrandFile(o.binDir, n) && removeIfPresent(join(o.binDir, n))) log(`removed ${join(o.binDir, n)}`);
  for (const n of BINARY_NAMES) if (removeIfPresent(join(o.binDir, n))) log(`removed ${join(o.binDir, n)}`);
  removeIfPresent(join(o.binDir, MANIFEST_NAME));
  for (const n of removeLibraries(o.binDir)) log(`removed ${join(o.binDir, LIB_DIR, n)}`);
  if (removeTlsDir(o.confDir)) log(`removed ${join(o.confDir, TLS_SUBDIR)}`);
  if (existsSync(join(o.confDir, TLS_SUBDIR))) log(`left ${join(o.confDir, TLS_SUBDIR)}: it holds files strand did not write`);
  if (installed === '' || o.nodeState) return status;
  const others = configsBefore(o.confDir, '\uffff').map((n) => join(o.confDir, n));
  for (const l of leftovers(nodeStateOf(installed), { otherConfigs: others })) log(`left in place: ${l}`);
  return status;
}

/** Resolves on SIGTERM or SIGINT (the kubelet stopping the DaemonSet pod). */
function sleepUntilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const timer = setInterval(() => {}, 1 << 30);
    const stop = () => {
      clearInterval(timer);
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

export async function main(argv: string[], io: PluginIO): Promise<number> {
  const log = (s: string) => io.stderr.write(`strand install: ${s}\n`);
  let o: Options;
  try {
    if (argv.includes('--help') || argv.includes('-h')) {
      io.stdout.write(USAGE);
      return 0;
    }
    o = parseOptions(argv, io.env);
    if (o.nodeState && !o.uninstall) throw new InstallError('--node-state goes with --uninstall');
    if (o.uninstall) {
      const restore = (): Promise<void> => restoreFlat(o.flatRecord, log);
      // with --node-state the takeover is undone once nothing refuses the uninstall
      if (!o.nodeState) await restore();
      const status = await uninstall(o, log, io.env, restore);
      if (status !== 0) return status;
    } else install(o, log);
  } catch (e) {
    if (e instanceof InstallError || e instanceof TemplateError) {
      log(e.message);
      return 1;
    }
    if ((e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.stderr.write(`strand install: ${(e as Error).message}\n${USAGE}`);
      return 2;
    }
    log(`failed: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
  if (o.sleep) {
    log('installed; sleeping until SIGTERM');
    await sleepUntilSignal();
  }
  return 0;
}
