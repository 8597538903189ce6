import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Containerd } from '../../helpers/containerd.ts';
import type { ContainerConfig, ContainerSecurityContext, PodSandboxConfig, SecurityProfile } from '../../helpers/cri/client.ts';

// A stand-in for the kubelet running one pod of a manifest through the CRI: the pod
// spec's containers become CreateContainer requests the way the kubelet builds them
// (env from values, the downward API and a ConfigMap; $(VAR) expanded in command and
// args; volume mounts onto host directories; the security context: privileged,
// capabilities, runAsUser, readOnlyRootFilesystem, allowPrivilegeEscalation -> no_new_privs,
// the pod's or container's seccomp profile, and for unprivileged containers the
// kubelet's default masked and read-only /proc and /sys paths). No API server, no
// scheduler: the caller says which container to run when.

/** The kubelet's defaults for ProcMountType Default (pkg/securitycontext). */
const MASKED_PATHS = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];
const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export interface PodInputs {
  /** image every container of the pod uses instead of the manifest's (as loaded here) */
  image: string;
  /** downward API values: fieldPath -> value */
  fields: Record<string, string>;
  /** the ConfigMap's data (configMapKeyRef) */
  configMap: { name: string; data: Record<string, string> };
  /** a host directory (or file) for every volume the containers mount */
  volumes: Record<string, string>;
}

function seccompOf(profile: { type?: string } | undefined): SecurityProfile {
  // no profile anywhere: the kubelet asks for Unconfined (SeccompDefault off)
  if (profile?.type === 'RuntimeDefault') return { profileType: 'RuntimeDefault' };
  if (profile?.type === 'Localhost') throw new Error('Localhost seccomp profiles are not emulated here');
  return { profileType: 'Unconfined' };
}

export class KubeletPod {
  readonly c: Containerd;
  readonly spec: any;
  readonly inputs: PodInputs;
  readonly name: string;
  readonly logDir: string;
  sandboxId: string | undefined;
  private readonly sandboxConfig: PodSandboxConfig;

  constructor(c: Containerd, name: string, podSpec: any, inputs: PodInputs) {
    this.c = c;
    this.spec = podSpec;
    this.inputs = inputs;
    this.name = name;
    this.logDir = join(c.dir, 'pod-logs', name);
    mkdirSync(this.logDir, { recursive: true });
    const network = podSpec.hostNetwork ? 'NODE' : 'POD';
    this.sandboxConfig = {
      metadata: { name, uid: `${name}-uid`, namespace: 'strand-system', attempt: 0 },
      // the kubelet sets a hostname only for pods with their own UTS namespace
      ...(podSpec.hostNetwork ? {} : { hostname: name }),
      logDirectory: this.logDir,
      labels: { pod: name },
      linux: {
        ...(c.opts.cgroupParent ? { cgroupParent: c.opts.cgroupParent } : {}),
        securityContext: {
          namespaceOptions: { network, pid: 'CONTAINER', ipc: 'POD' },
          seccomp: seccompOf(podSpec.securityContext?.seccompProfile),
          // the kubelet's rule: the sandbox is privileged when any container is
          privileged: [...(podSpec.initContainers ?? []), ...(podSpec.containers ?? [])].some((c: any) => c.securityContext?.privileged === true),
        },
      },
    };
  }

  async runSandbox(): Promise<string> {
    this.sandboxId = await this.c.cri().runPodSandbox(this.sandboxConfig);
    return this.sandboxId;
  }

  /** The CRI ContainerConfig the kubelet would send for `container`. */
  containerConfig(container: any): ContainerConfig {
    const vars: Record<string, string> = {};
    for (const e of container.env ?? []) {
      const ref = e.valueFrom?.configMapKeyRef;
      const field = e.valueFrom?.fieldRef?.fieldPath;
      let v: string | undefined;
      if (e.value !== undefined) v = e.value;
      else if (field !== undefined) v = this.inputs.fields[field];
      else if (ref?.name === this.inputs.configMap.name) v = this.inputs.configMap.data[ref.key];
      if (v === undefined) throw new Error(`cannot resolve env ${e.name}`);
      vars[e.name] = v;
    }
    // the kubelet's rule: $(VAR) of a variable the container defines; anything else stays
    const expand = (a: string) => a.replace(/\$\(([A-Za-z0-9_]+)\)/g, (m, n: string) => vars[n] ?? m);
    const mounts = (container.volumeMounts ?? []).map((m: any) => {
      const src = this.inputs.volumes[m.name];
      if (!src) throw new Error(`no host path for volume ${m.name}`);
      return { containerPath: m.mountPath, hostPath: m.subPath ? join(src, m.subPath) : src, readonly: m.readOnly === true };
    });
    const sc = container.securityContext ?? {};
    const security: ContainerSecurityContext = {
      namespaceOptions: { network: this.spec.hostNetwork ? 'NODE' : 'POD', pid: 'CONTAINER', ipc: 'POD' },
      seccomp: seccompOf(sc.seccompProfile ?? this.spec.securityContext?.seccompProfile),
    };
    if (sc.privileged) security.privileged = true;
    else {
      security.maskedPaths = MASKED_PATHS;
      security.readonlyPaths = READONLY_PATHS;
    }
    if (sc.capabilities) security.capabilities = { addCapabilities: sc.capabilities.add ?? [], dropCapabilities: sc.capabilities.drop ?? [] };
    const runAsUser = sc.runAsUser ?? this.spec.securityContext?.runAsUser;
    if (runAsUser !== undefined) security.runAsUser = { value: runAsUser };
    if (sc.readOnlyRootFilesystem) security.readonlyRootfs = true;
    if (sc.allowPrivilegeEscalation === false) security.noNewPrivs = true;
    mkdirSync(join(this.logDir, container.name), { recursive: true });
    return {
      metadata: { name: container.name, attempt: 0 },
      image: { image: this.inputs.image },
      command: (container.command ?? []).map(expand),
      args: (container.args ?? []).map(expand),
      envs: Object.entries(vars).map(([key, value]) => ({ key, value })),
      mounts,
      logPath: `${container.name}/0.log`,
      linux: { securityContext: security },
    };
  }

  async create(container: any): Promise<string> {
    if (!this.sandboxId) throw new Error('runSandbox() first');
    return this.c.cri().createContainer(this.sandboxId, this.containerConfig(container), this.sandboxConfig);
  }

  /** Creates and starts `container`; returns its ID. */
  async start(container: any): Promise<string> {
    const id = await this.create(container);
    await this.c.cri().startContainer(id);
    return id;
  }

  /** Waits until the container has exited; returns its exit code. */
  async waitExit(id: string, timeoutMs = 120_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const st = await this.c.cri().containerStatus(id);
      if (st.status.state === 'CONTAINER_EXITED') return st.status.exitCode;
      if (Date.now() > deadline) throw new Error(`container ${id} still ${st.status.state} after ${timeoutMs} ms\n${this.logs()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** An init container: start it, wait for it to exit, return its exit code and log. */
  async runToCompletion(container: any): Promise<{ id: string; exitCode: number; log: string }> {
    const id = await this.start(container);
    const exitCode = await this.waitExit(id);
    return { id, exitCode, log: this.logs() };
  }

  /** The pod's container logs as the CRI wrote them (each line "<time> <stream> <tag> <text>"). */
  logs(): string {
    const out: string[] = [];
    for (const c of [...(this.spec.initContainers ?? []), ...(this.spec.containers ?? [])]) {
      try {
        out.push(readFileSync(join(this.logDir, c.name, '0.log'), 'utf8'));
      } catch {
        // not started
      }
    }
    return out.join('');
  }

  /** Stops (grace period from the pod spec), removes every container and the sandbox. */
  async remove(): Promise<void> {
    if (!this.sandboxId) return;
    await this.c.cri().stopPodSandbox(this.sandboxId);
    await this.c.cri().removePodSandbox(this.sandboxId);
    this.sandboxId = undefined;
  }
}
