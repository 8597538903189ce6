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
  linux?: { cgroupParent?: string };
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
