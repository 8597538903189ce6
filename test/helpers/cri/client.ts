import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// A small CRI RuntimeService client over containerd's unix socket, from our minimal
// api.proto (only the RPCs and fields the end-to-end tests use). Field names are
// camelCase as proto-loader maps them; 64-bit integers arrive as strings.

const PROTO = join(dirname(fileURLToPath(import.meta.url)), 'api.proto');

export interface PodSandboxMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt?: number;
}

export interface PortMapping {
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  containerPort: number;
  hostPort: number;
  hostIp?: string;
}

export interface PodSandboxConfig {
  metadata: PodSandboxMetadata;
  hostname?: string;
  logDirectory?: string;
  /** hostPort mappings: containerd hands them to the plugins with the portMappings capability. */
  portMappings?: PortMapping[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  linux?: {
    cgroupParent?: string;
    securityContext?: { namespaceOptions?: NamespaceOption; privileged?: boolean; seccomp?: SecurityProfile };
  };
}

type NamespaceMode = 'POD' | 'CONTAINER' | 'NODE';
interface NamespaceOption {
  network?: NamespaceMode;
  pid?: NamespaceMode;
  ipc?: NamespaceMode;
}
export interface SecurityProfile {
  profileType: 'RuntimeDefault' | 'Unconfined' | 'Localhost';
  localhostRef?: string;
}

/** CRI LinuxContainerSecurityContext (the fields the kubelet sets from a pod spec). */
export interface ContainerSecurityContext {
  capabilities?: { addCapabilities?: string[]; dropCapabilities?: string[] };
  privileged?: boolean;
  namespaceOptions?: NamespaceOption;
  runAsUser?: { value: number };
  readonlyRootfs?: boolean;
  noNewPrivs?: boolean;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  seccomp?: SecurityProfile;
}

export interface ContainerConfig {
  metadata: { name: string; attempt?: number };
  image: { image: string };
  command?: string[];
  args?: string[];
  envs?: Array<{ key: string; value: string }>;
  mounts?: Array<{ containerPath: string; hostPath: string; readonly?: boolean }>;
  labels?: Record<string, string>;
  logPath?: string;
  linux?: { securityContext?: ContainerSecurityContext };
}

export interface ContainerStatusResponse {
  status: {
    id: string;
    state: 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';
    exitCode: number;
    reason: string;
    message: string;
    logPath: string;
  };
}

export interface PodSandboxStatusResponse {
  status: {
    id: string;
    metadata: PodSandboxMetadata;
    state: 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
    createdAt: string;
    network: { ip: string; additionalIps: Array<{ ip: string }> } | null;
    labels: Record<string, string>;
  };
  info: Record<string, string>;
}

export interface StatusResponse {
  status?: { conditions?: Array<{ type: string; status: boolean; reason: string; message: string }> };
  info?: Record<string, string>;
}

type Unary = (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: any) => void) => void;

let definition: grpc.GrpcObject | undefined;

function service(): grpc.ServiceClientConstructor {
  definition ??= grpc.loadPackageDefinition(protoLoader.loadSync(PROTO, { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true }));
  const runtime = (definition['runtime'] as grpc.GrpcObject)['v1'] as grpc.GrpcObject;
  return runtime['RuntimeService'] as grpc.ServiceClientConstructor;
}

export class CriClient {
  private readonly client: grpc.Client;

  constructor(socket: string) {
    const Ctor = service();
    this.client = new Ctor(`unix://${socket}`, grpc.credentials.createInsecure());
  }

  private call<T>(method: string, req: object, timeoutMs = 120_000): Promise<T> {
    const fn = (this.client as unknown as Record<string, Unary>)[method];
    if (!fn) throw new Error(`CRI method ${method} not in api.proto`);
    return new Promise((resolve, reject) => {
      fn.call(this.client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(new Error(`CRI ${method}: ${err.details || err.message}`, { cause: err }));
        else resolve(res as T);
      });
    });
  }

  version(): Promise<{ version: string; runtimeName: string; runtimeVersion: string; runtimeApiVersion: string }> {
    return this.call('Version', { version: 'v1' }, 2_000);
  }

  status(): Promise<StatusResponse> {
    return this.call('Status', { verbose: false });
  }

  async runPodSandbox(config: PodSandboxConfig): Promise<string> {
    const res = await this.call<{ podSandboxId: string }>('RunPodSandbox', { config });
    return res.podSandboxId;
  }

  podSandboxStatus(id: string, verbose = false): Promise<PodSandboxStatusResponse> {
    return this.call('PodSandboxStatus', { podSandboxId: id, verbose });
  }

  async stopPodSandbox(id: string): Promise<void> {
    await this.call('StopPodSandbox', { podSandboxId: id });
  }

  async removePodSandbox(id: string): Promise<void> {
    await this.call('RemovePodSandbox', { podSandboxId: id });
  }

  async listPodSandbox(): Promise<Array<{ id: string; metadata: PodSandboxMetadata; state: string }>> {
    const res = await this.call<{ items: Array<{ id: string; metadata: PodSandboxMetadata; state: string }> }>('ListPodSandbox', {});
    return res.items;
  }

  async createContainer(podSandboxId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig): Promise<string> {
    const res = await this.call<{ containerId: string }>('CreateContainer', { podSandboxId, config, sandboxConfig });
    return res.containerId;
  }

  async startContainer(id: string): Promise<void> {
    await this.call('StartContainer', { containerId: id });
  }

  /** SIGTERM (or the image's stop signal), SIGKILL after `timeoutSeconds`. */
  async stopContainer(id: string, timeoutSeconds: number): Promise<void> {
    await this.call('StopContainer', { containerId: id, timeout: timeoutSeconds });
  }

  async removeContainer(id: string): Promise<void> {
    await this.call('RemoveContainer', { containerId: id });
  }

  /** verbose: `info.info` holds JSON with the OCI runtime spec containerd generated (runtimeSpec). */
  containerStatus(id: string, verbose = false): Promise<ContainerStatusResponse & { info: Record<string, string> }> {
    return this.call('ContainerStatus', { containerId: id, verbose });
  }

  /** Runs `cmd` in the container (a probe's exec), as the kubelet's prober does. */
  async execSync(id: string, cmd: string[], timeoutSeconds: number): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const res = await this.call<{ stdout: Buffer; stderr: Buffer; exitCode: number }>('ExecSync', { containerId: id, cmd, timeout: timeoutSeconds });
    return { exitCode: res.exitCode, stdout: Buffer.from(res.stdout).toString('utf8'), stderr: Buffer.from(res.stderr).toString('utf8') };
  }

  /** The sandbox's network namespace path, from the runtime spec in the verbose info. */
  async netnsPath(id: string): Promise<string> {
    const st = await this.podSandboxStatus(id, true);
    const info = JSON.parse(st.info['info'] ?? '{}') as {
      runtimeSpec?: { linux?: { namespaces?: Array<{ type: string; path?: string }> } };
    };
    const ns = info.runtimeSpec?.linux?.namespaces?.find((n) => n.type === 'network');
    if (!ns?.path) throw new Error(`sandbox ${id}: no network namespace path in its status info`);
    return ns.path;
  }

  close(): void {
    this.client.close();
  }
}
