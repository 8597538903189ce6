import { execFileSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { Secret } from 'kubernetes-models/v1';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { CLIENT_SECRET, main, makeCerts, SERVER_SECRET, serverSans, type CertsOptions } from '../../../cmd/certs.ts';
import { issue, issuerFrom, publicOf } from '../../../cmd/certs/x509.ts';
import { freePort } from '../../helpers/etcd.ts';

// `strand certs`: certificates checked by three independent readers (Node's X509Certificate,
// `openssl verify -x509_strict` with purposes, a real mutual-TLS handshake), the Secrets
// YAML against the Kubernetes schema, and the CA reuse and error paths.

let dir: string;
const opts = (over: Partial<CertsOptions> = {}): CertsOptions => ({
  dir,
  namespace: 'strand-system',
  service: 'strand-etcd',
  serviceIP: '10.96.0.50',
  clusterDomain: 'cluster.local',
  extraSans: [],
  days: 365,
  caDays: 3650,
  ...over,
});
const pem = (n: string) => readFileSync(join(dir, n), 'utf8');
const cert = (n: string) => new X509Certificate(pem(n));

beforeEach(() => {
  dir = join(mkdtempSync(join(tmpdir(), 'strand-certs-')), 'out');
});
afterEach(() => rmSync(join(dir, '..'), { recursive: true, force: true }));

function openssl(args: string[]): { ok: boolean; out: string } {
  try {
    return { ok: true, out: execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) };
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string };
    return { ok: false, out: `${x.stdout ?? ''}${x.stderr ?? ''}` };
  }
}

describe('strand certs: the certificates', () => {
  it('a CA, a server certificate for the Service names and ClusterIP, a client certificate; keys 0600 in a 0700 directory', () => {
    const w = makeCerts(opts({ extraSans: ['etcd.example.org', '192.0.2.10'] }));
    expect(w.reusedCa).toBe(false);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    for (const k of ['ca.key', 'server.key', 'client.key', 'secrets.yaml']) expect(statSync(join(dir, k)).mode & 0o777, k).toBe(0o600);
    const ca = cert('ca.crt');
    const server = cert('server.crt');
    const client = cert('client.crt');
    expect(ca.ca).toBe(true);
    expect(ca.checkIssued(ca)).toBe(true);
    for (const c of [server, client]) {
      expect(c.ca).toBe(false);
      expect(c.checkIssued(ca)).toBe(true);
      expect(c.verify(ca.publicKey)).toBe(true);
      expect(c.issuer).toBe(ca.subject);
    }
    expect(server.checkPrivateKey(createPrivateKey(pem('server.key')))).toBe(true);
    expect(client.checkPrivateKey(createPrivateKey(pem('client.key')))).toBe(true);
    expect(server.keyUsage.sort()).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(client.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    for (const ip of ['10.96.0.50', '127.0.0.1', '::1', '192.0.2.10']) expect(server.checkIP(ip), ip).toBe(ip);
    for (const host of [
      'strand-etcd',
      'strand-etcd.strand-system',
      'strand-etcd.strand-system.svc',
      'strand-etcd.strand-system.svc.cluster.local',
      'localhost',
      'etcd.example.org',
    ]) {
      expect(server.checkHost(host), host).toBe(host);
    }
    expect(server.checkIP('10.96.0.51')).toBeUndefined();
    expect(client.subjectAltName).toBeUndefined();
    const days = (c: X509Certificate) => (Date.parse(c.validTo) - Date.now()) / 86_400_000;
    expect(days(server)).toBeGreaterThan(364);
    expect(days(server)).toBeLessThan(366);
    expect(days(ca)).toBeGreaterThan(3649);
  });

  it('openssl -x509_strict accepts the server certificate for TLS servers and the client one for clients only', () => {
    makeCerts(opts());
    const ca = join(dir, 'ca.crt');
    expect(openssl(['verify', '-x509_strict', '-CAfile', ca, '-purpose', 'sslserver', join(dir, 'server.crt')]).ok).toBe(true);
    expect(openssl(['verify', '-x509_strict', '-CAfile', ca, '-purpose', 'sslclient', join(dir, 'server.crt')]).ok).toBe(true);
    expect(openssl(['verify', '-x509_strict', '-CAfile', ca, '-purpose', 'sslclient', join(dir, 'client.crt')]).ok).toBe(true);
    const wrong = openssl(['verify', '-x509_strict', '-CAfile', ca, '-purpose', 'sslserver', join(dir, 'client.crt')]);
    expect(wrong.ok).toBe(false);
    expect(wrong.out).toContain('unsuitable certificate purpose');
    const text = openssl(['x509', '-noout', '-text', '-in', join(dir, 'ca.crt')]).out;
    expect(text).toMatch(/CA:TRUE, pathlen:0/);
    expect(text).toMatch(/Certificate Sign, CRL Sign/);
  });

  it('mutual TLS: a client with the client certificate gets through; none, or one from another CA, is refused', async () => {
    makeCerts(opts());
    const other = mkdtempSync(join(tmpdir(), 'strand-certs-other-'));
    try {
      makeCerts(opts({ dir: other }));
      const port = await freePort();
      const server = createServer({ key: pem('server.key'), cert: pem('server.crt'), ca: pem('ca.crt'), requestCert: true, rejectUnauthorized: true }, (s) =>
        s.end('ok'),
      );
      await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
      const talk = (clientDir: string | undefined, host = '127.0.0.1'): Promise<string> =>
        new Promise((resolve) => {
          const s: TLSSocket = connect({
            host,
            port,
            ca: pem('ca.crt'),
            ...(clientDir ? { cert: readFileSync(join(clientDir, 'client.crt')), key: readFileSync(join(clientDir, 'client.key')) } : {}),
          });
          let got = '';
          s.setEncoding('utf8').on('data', (d: string) => {
            got += d;
          });
          s.on('end', () => resolve(got || 'closed'));
          s.on('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code ?? e.message}`));
          s.setTimeout(5000, () => s.destroy(new Error('timeout')));
        });
      try {
        expect(await talk(dir)).toBe('ok');
        expect(await talk(dir, 'localhost')).toBe('ok');
        expect(await talk(undefined)).toMatch(/^error|^closed$/);
        expect(await talk(other)).toMatch(/^error|^closed$/);
      } finally {
        await new Promise((r) => server.close(r));
      }
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('secrets.yaml: two kubernetes.io/tls Secrets that validate, holding exactly the files', () => {
    makeCerts(opts({ namespace: 'kube-network' }));
    const docs = parseAllDocuments(pem('secrets.yaml')).map((d) => d.toJS());
    expect(docs.map((d) => d.metadata.name)).toEqual([SERVER_SECRET, CLIENT_SECRET]);
    for (const d of docs) {
      expect(() => new Secret(d).validate()).not.toThrow();
      expect(d).toMatchObject({ type: 'kubernetes.io/tls', metadata: { namespace: 'kube-network' } });
      expect(d.stringData['ca.crt']).toBe(pem('ca.crt'));
    }
    expect(docs[0].stringData['tls.crt']).toBe(pem('server.crt'));
    expect(docs[0].stringData['tls.key']).toBe(pem('server.key'));
    expect(docs[1].stringData['tls.crt']).toBe(pem('client.crt'));
    expect(docs[1].stringData['tls.key']).toBe(pem('client.key'));
  });
});

describe('strand certs: CA reuse and errors', () => {
  it('a second run keeps the CA and issues new server and client certificates under it', () => {
    makeCerts(opts());
    const ca = pem('ca.crt');
    const caKey = pem('ca.key');
    const server = pem('server.crt');
    const w = makeCerts(opts({ serviceIP: '10.0.0.10' }));
    expect(w.reusedCa).toBe(true);
    expect(pem('ca.crt')).toBe(ca);
    expect(pem('ca.key')).toBe(caKey);
    expect(pem('server.crt')).not.toBe(server);
    expect(cert('server.crt').checkIssued(new X509Certificate(ca))).toBe(true);
    expect(cert('server.crt').checkIP('10.0.0.10')).toBe('10.0.0.10');
  });

  it('reuses a CA made elsewhere (RSA, by openssl): issuer name and key identifier carried over', () => {
    const d = join(dir, '..', 'rsa');
    execFileSync('mkdir', ['-p', d]);
    expect(
      openssl([
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        join(d, 'ca.key'),
        '-out',
        join(d, 'ca.crt'),
        '-days',
        '30',
        '-subj',
        '/O=Example/CN=Example etcd CA',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ]).ok,
    ).toBe(true);
    makeCerts(opts({ dir: d, days: 10 }));
    expect(openssl(['verify', '-x509_strict', '-CAfile', join(d, 'ca.crt'), '-purpose', 'sslserver', join(d, 'server.crt')]).ok).toBe(true);
    expect(new X509Certificate(readFileSync(join(d, 'server.crt'))).issuer).toBe('O=Example\nCN=Example etcd CA');
    // the leaf outliving the CA is refused
    expect(() => makeCerts(opts({ dir: d, days: 60 }))).toThrow(/expires .* before certificates valid for 60 days/);
  });

  it("only one of ca.crt/ca.key, a key that is not the CA's, or a bad name: an error, nothing half-written", () => {
    makeCerts(opts());
    rmSync(join(dir, 'ca.key'));
    expect(() => makeCerts(opts())).toThrow(/only one of ca.crt and ca.key/);
    writeFileSync(join(dir, 'ca.key'), generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    expect(() => makeCerts(opts())).toThrow(/CA key does not belong to the CA certificate/);
    expect(() => issuerFrom(pem('server.crt'), createPrivateKey(pem('server.key')))).toThrow(/not a CA/);
  });

  it('main(): flags, messages, usage errors', async () => {
    let err = '';
    const io = {
      env: {},
      stdin: async () => Buffer.alloc(0),
      stdout: { write: () => {} },
      stderr: {
        write: (s: string) => {
          err += s;
        },
      },
    };
    expect(await main(['--dir', dir, '--san', 'etcd.example.org', '--service-ip', '10.43.0.20'], io)).toBe(0);
    expect(err).toContain('server certificate for strand-etcd, strand-etcd.strand-system,');
    expect(err).toContain('10.43.0.20');
    expect(err).toContain(`kubectl apply -f ${join(dir, 'secrets.yaml')}`);
    for (const bad of [
      ['--san', 'not a name!'],
      ['--service-ip', '10.96.0'],
      ['--days', '0'],
      ['--namespace', 'Bad_NS'],
    ]) {
      err = '';
      expect(await main(['--dir', dir, ...bad], io), bad.join(' ')).toBe(1);
      expect(err).toMatch(/^strand certs: /);
    }
    expect(await main(['--bogus'], io)).toBe(2);
  });

  it('serverSans(): Service names in every form, the ClusterIP, loopback, extras once', () => {
    expect(serverSans({ namespace: 'ns', service: 'etcd', serviceIP: '10.0.0.5', clusterDomain: 'k8s.local', extraSans: ['localhost', 'x.example'] })).toEqual([
      'etcd',
      'etcd.ns',
      'etcd.ns.svc',
      'etcd.ns.svc.k8s.local',
      'localhost',
      '10.0.0.5',
      '127.0.0.1',
      '::1',
      'x.example',
    ]);
  });

  it('dates from 2050 are GeneralizedTime, and read back the same', () => {
    const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    const notAfter = new Date('2051-03-04T05:06:07Z');
    const c = new X509Certificate(
      issue({ commonName: 'late', publicKey: publicOf(key), selfKey: key, ca: true, notBefore: new Date('2049-12-31T23:59:59Z'), notAfter }),
    );
    expect(new Date(c.validTo).toISOString()).toBe('2051-03-04T05:06:07.000Z');
    expect(new Date(c.validFrom).toISOString()).toBe('2049-12-31T23:59:59.000Z');
  });
});
