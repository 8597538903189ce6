// `strand certs`: the certificates of strand's etcd, mutual TLS by default.
//
//   strand certs [--dir DIR] [--namespace NS] [--service NAME] [--service-ip IP]
//                [--cluster-domain DOMAIN] [--san NAME|IP]... [--days N] [--ca-days N]
//
// Writes to DIR (default ./strand-certs, mode 0700; keys 0600):
//   ca.crt ca.key          a CA (EC P-256), made once: a later run reuses it, so new
//                          server and client certificates need no change of trust
//   server.crt server.key  etcd's server certificate: serverAuth and clientAuth (etcd's
//                          own gRPC gateway presents it to the server), SANs = the
//                          Service's DNS names and ClusterIP, localhost, 127.0.0.1, ::1
//                          and every --san
//   client.crt client.key  strand's client certificate (plugins, agent, strand ipam)
//   secrets.yaml           the Secrets strand-etcd-server-tls (etcd.yaml mounts it) and
//                          strand-etcd-tls (strand.yaml's installer copies it to the
//                          nodes), for `kubectl apply -f`
// Every run issues new server and client certificates and keys.
import { generateKeyPairSync, type KeyObject, createPrivateKey } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { PluginIO } from '../lib/cni/skel.ts';
import { writeFileAtomic } from './install/files.ts';
import { CertificateError, issue, issuerFrom, publicOf } from './certs/x509.ts';

const USAGE = `usage: strand certs [--dir DIR] [--namespace NS] [--service NAME] [--service-ip IP]
                    [--cluster-domain DOMAIN] [--san NAME|IP]... [--days N] [--ca-days N]

  --dir             where to write (default ./strand-certs); an existing ca.crt + ca.key
                    there is reused
  --namespace       namespace of the etcd Service and the Secrets (default strand-system)
  --service         the etcd Service's name (default strand-etcd)
  --service-ip      the etcd Service's ClusterIP (default 10.96.0.50, manifests/etcd.yaml)
  --cluster-domain  the cluster's DNS domain (default cluster.local)
  --san             one more subject alternative name of the server certificate (DNS
                    name or IP address); repeat for more
  --days            validity of the server and client certificates (default 365)
  --ca-days         validity of a new CA (default 3650)

Writes ca.crt, ca.key, server.crt, server.key, client.crt, client.key and secrets.yaml
(the Secrets strand-etcd-server-tls and strand-etcd-tls): kubectl apply -f DIR/secrets.yaml
`;

export const SERVER_SECRET = 'strand-etcd-server-tls';
export const CLIENT_SECRET = 'strand-etcd-tls';

export interface CertsOptions {
  dir: string;
  namespace: string;
  service: string;
  serviceIP: string;
  clusterDomain: string;
  extraSans: string[];
  days: number;
  caDays: number;
}

function positiveInt(flag: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!/^[1-9]\d{0,5}$/.test(v)) throw new CertificateError(`--${flag} ${JSON.stringify(v)}: a whole number of days`);
  return Number(v);
}

function parseOptions(argv: string[]): CertsOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      dir: { type: 'string' },
      namespace: { type: 'string' },
      service: { type: 'string' },
      'service-ip': { type: 'string' },
      'cluster-domain': { type: 'string' },
      san: { type: 'string', multiple: true },
      days: { type: 'string' },
      'ca-days': { type: 'string' },
    },
  });
  if (positionals.length > 0) throw new CertificateError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const label = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
  const o: CertsOptions = {
    dir: values.dir ?? 'strand-certs',
    namespace: values.namespace ?? 'strand-system',
    service: values.service ?? 'strand-etcd',
    serviceIP: values['service-ip'] ?? '10.96.0.50',
    clusterDomain: values['cluster-domain'] ?? 'cluster.local',
    extraSans: values.san ?? [],
    days: positiveInt('days', values.days, 365),
    caDays: positiveInt('ca-days', values['ca-days'], 3650),
  };
  if (!label.test(o.namespace)) throw new CertificateError(`--namespace ${JSON.stringify(o.namespace)} is not a Kubernetes namespace name`);
  if (!label.test(o.service)) throw new CertificateError(`--service ${JSON.stringify(o.service)} is not a Kubernetes Service name`);
  if (isIP(o.serviceIP) === 0) throw new CertificateError(`--service-ip ${JSON.stringify(o.serviceIP)} is not an IP address`);
  if (!/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(o.clusterDomain))
    throw new CertificateError(`--cluster-domain ${JSON.stringify(o.clusterDomain)} is not a DNS domain`);
  return o;
}

/** The server certificate's subject alternative names for these options. */
export function serverSans(o: Pick<CertsOptions, 'namespace' | 'service' | 'serviceIP' | 'clusterDomain' | 'extraSans'>): string[] {
  const svc = `${o.service}.${o.namespace}`;
  const all = [o.service, svc, `${svc}.svc`, `${svc}.svc.${o.clusterDomain}`, 'localhost', o.serviceIP, '127.0.0.1', '::1', ...o.extraSans];
  return [...new Set(all)];
}

function newKey(): KeyObject {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
}

const pemKey = (k: KeyObject) => k.export({ type: 'pkcs8', format: 'pem' }).toString();

function days(from: Date, n: number): Date {
  return new Date(from.getTime() + n * 86_400_000);
}

/** A Secret of type kubernetes.io/tls with ca.crt, as YAML (PEM in literal blocks). */
function secretYaml(name: string, namespace: string, files: { 'ca.crt': string; 'tls.crt': string; 'tls.key': string }, comment: string): string {
  const block = (pem: string) =>
    pem
      .trimEnd()
      .split('\n')
      .map((l) => `    ${l}`)
      .join('\n');
  return [
    `# ${comment}`,
    'apiVersion: v1',
    'kind: Secret',
    'metadata:',
    `  name: ${name}`,
    `  namespace: ${namespace}`,
    '  labels:',
    '    app.kubernetes.io/part-of: strand',
    'type: kubernetes.io/tls',
    'stringData:',
    ...(['ca.crt', 'tls.crt', 'tls.key'] as const).flatMap((k) => [`  ${k}: |`, block(files[k])]),
    '',
  ].join('\n');
}

interface Written {
  reusedCa: boolean;
  sans: string[];
  notAfter: Date;
}

/** The CA of `dir`: its ca.crt and ca.key when both exist (reused), else a new one (not yet written). */
function loadOrMakeCa(dir: string, o: CertsOptions, now: Date, notBefore: Date): { pem: string; key: KeyObject; reused: boolean } {
  const caCrt = join(dir, 'ca.crt');
  const caKeyFile = join(dir, 'ca.key');
  if (!existsSync(caCrt) && !existsSync(caKeyFile)) {
    const key = newKey();
    const pem = issue({
      commonName: 'strand-etcd-ca',
      organization: 'strand',
      publicKey: publicOf(key),
      selfKey: key,
      ca: true,
      notBefore,
      notAfter: days(now, o.caDays),
    });
    return { pem, key, reused: false };
  }
  if (!existsSync(caCrt) || !existsSync(caKeyFile)) throw new CertificateError(`${dir} has only one of ca.crt and ca.key: restore the other or remove both`);
  const pem = readFileSync(caCrt, 'utf8');
  try {
    return { pem, key: createPrivateKey(readFileSync(caKeyFile)), reused: true };
  } catch (e) {
    throw new CertificateError(`${caKeyFile} is not a private key: ${(e as Error).message}`);
  }
}

/** A new key and its certificate from `issuer`: etcd's server certificate or strand's client certificate. */
function issueLeaf(
  issuer: ReturnType<typeof issuerFrom>,
  leaf: { commonName: string; organization?: string; extKeyUsage: Array<'serverAuth' | 'clientAuth'>; altNames?: string[] },
  notBefore: Date,
  notAfter: Date,
): { pem: string; key: KeyObject } {
  const key = newKey();
  const pem = issue({ ...leaf, publicKey: publicOf(key), issuer, ca: false, notBefore, notAfter });
  return { pem, key };
}

/** secrets.yaml: the server and client Secrets, each with the CA. */
function secretsYaml(o: CertsOptions, caPem: string, server: { pem: string; key: KeyObject }, client: { pem: string; key: KeyObject }, notAfter: Date): string {
  const until = notAfter.toISOString().slice(0, 10);
  return [
    secretYaml(
      SERVER_SECRET,
      o.namespace,
      { 'ca.crt': caPem, 'tls.crt': server.pem, 'tls.key': pemKey(server.key) },
      `etcd's server certificate (strand certs; valid until ${until}), mounted by manifests/etcd.yaml`,
    ),
    secretYaml(
      CLIENT_SECRET,
      o.namespace,
      { 'ca.crt': caPem, 'tls.crt': client.pem, 'tls.key': pemKey(client.key) },
      `strand's etcd client certificate (strand certs; valid until ${until}), copied to every node by manifests/strand.yaml`,
    ),
  ].join('---\n');
}

/** Issues the certificates into o.dir and writes secrets.yaml; returns what it did. */
export function makeCerts(o: CertsOptions, now = new Date()): Written {
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  chmodSync(o.dir, 0o700);
  const f = (n: string) => join(o.dir, n);
  const notBefore = new Date(now.getTime() - 3_600_000); // an hour of clock skew between machines
  const ca = loadOrMakeCa(o.dir, o, now, notBefore);
  const issuer = issuerFrom(ca.pem, ca.key);
  const notAfter = days(now, o.days);
  if (new Date(issuer.cert.validTo) < notAfter)
    throw new CertificateError(
      `the CA in ${f('ca.crt')} expires ${issuer.cert.validTo}, before certificates valid for ${o.days} days: use fewer --days or a new CA`,
    );

  const sans = serverSans(o);
  const server = issueLeaf(issuer, { commonName: o.service, extKeyUsage: ['serverAuth', 'clientAuth'], altNames: sans }, notBefore, notAfter);
  const client = issueLeaf(issuer, { commonName: 'strand', organization: 'strand', extKeyUsage: ['clientAuth'] }, notBefore, notAfter);

  if (!ca.reused) {
    writeFileAtomic(f('ca.key'), Buffer.from(pemKey(ca.key)), 0o600);
    writeFileAtomic(f('ca.crt'), Buffer.from(ca.pem), 0o644);
  }
  writeFileAtomic(f('server.key'), Buffer.from(pemKey(server.key)), 0o600);
  writeFileAtomic(f('server.crt'), Buffer.from(server.pem), 0o644);
  writeFileAtomic(f('client.key'), Buffer.from(pemKey(client.key)), 0o600);
  writeFileAtomic(f('client.crt'), Buffer.from(client.pem), 0o644);
  writeFileAtomic(f('secrets.yaml'), Buffer.from(secretsYaml(o, ca.pem, server, client, notAfter)), 0o600);
  return { reusedCa: ca.reused, sans, notAfter };
}

export async function main(argv: string[], io: PluginIO): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write(USAGE);
    return 0;
  }
  try {
    const o = parseOptions(argv);
    const w = makeCerts(o);
    const log = (s: string) => io.stderr.write(`strand certs: ${s}\n`);
    log(w.reusedCa ? `using the existing CA ${join(o.dir, 'ca.crt')}` : `new CA ${join(o.dir, 'ca.crt')} (keep ca.key safe: it signs future certificates)`);
    log(`server certificate for ${w.sans.join(', ')}`);
    log(`server and client certificates valid until ${w.notAfter.toISOString()}`);
    log(`wrote ${join(o.dir, 'secrets.yaml')}: kubectl apply -f ${join(o.dir, 'secrets.yaml')}`);
    return 0;
  } catch (e) {
    if (e instanceof CertificateError) {
      io.stderr.write(`strand certs: ${e.message}\n`);
      return 1;
    }
    if ((e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.stderr.write(`strand certs: ${(e as Error).message}\n${USAGE}`);
      return 2;
    }
    throw e;
  }
}
