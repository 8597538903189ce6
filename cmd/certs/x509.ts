// X.509 v3 certificates for `strand certs`, built from their DER (RFC 5280) and signed
// with node:crypto. node:crypto makes and uses keys and parses certificates but cannot
// issue one; this file encodes the few structures a CA, a TLS server and a TLS client
// certificate need, and reads back the two fields of an existing CA that issuing needs
// (its subject and key identifier). No I/O: keys and bytes in, PEM out.
import { createHash, createPublicKey, type KeyObject, randomBytes, sign, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';

export class CertificateError extends Error {
  override readonly name = 'CertificateError';
}

// ---------------------------------------------------------------------- DER writing ----

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let x = n; x > 0; x = Math.floor(x / 256)) bytes.unshift(x & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One tag-length-value with `tag` (a whole identifier octet). */
function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
}

const seq = (...c: Buffer[]) => tlv(0x30, ...c);
const set = (...c: Buffer[]) => tlv(0x31, ...c);
const octets = (b: Buffer) => tlv(0x04, b);
const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, 'utf8'));
const bool = (v: boolean) => tlv(0x01, Buffer.from([v ? 0xff : 0]));
/** Context-specific constructed [n] (EXPLICIT tagging). */
const explicit = (n: number, ...c: Buffer[]) => tlv(0xa0 | n, ...c);

function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const first = arcs[0]! * 40 + arcs[1]!;
  const out: number[] = [];
  for (const arc of [first, ...arcs.slice(2)]) {
    const chunk = [arc & 0x7f];
    for (let x = Math.floor(arc / 128); x > 0; x = Math.floor(x / 128)) chunk.unshift((x & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** A non-negative INTEGER from big-endian bytes (minimal, with a 0 byte before a high bit). */
function unsignedInt(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const v = b.subarray(i);
  return tlv(0x02, (v[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v);
}

/** A BIT STRING of named bits (bit 0 first), trailing zero bits dropped as DER requires. */
function namedBits(bits: number[]): Buffer {
  const top = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(top / 8) + 1);
  for (const b of bits) bytes[Math.floor(b / 8)]! |= 0x80 >> (b % 8);
  return tlv(0x03, Buffer.from([7 - (top % 8)]), bytes);
}

function time(d: Date): Buffer {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '');
  // UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5)
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(`${digits.slice(2)}Z`)) : tlv(0x18, Buffer.from(`${digits}Z`));
}

// ---------------------------------------------------------------------- DER reading ----

interface Tlv {
  tag: number;
  /** the whole element */
  raw: Buffer;
  body: Buffer;
}

function readTlv(b: Buffer, at = 0): Tlv {
  const tag = b[at];
  let len = b[at + 1];
  if (tag === undefined || len === undefined) throw new CertificateError('certificate DER truncated');
  let off = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || off + n > b.length) throw new CertificateError('certificate DER has a bad length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[off + i]!;
    off += n;
  }
  if (off + len > b.length) throw new CertificateError('certificate DER truncated');
  return { tag, raw: b.subarray(at, off + len), body: b.subarray(off, off + len) };
}

function children(body: Buffer): Tlv[] {
  const out: Tlv[] = [];
  for (let at = 0; at < body.length; ) {
    const t = readTlv(body, at);
    out.push(t);
    at += t.raw.length;
  }
  return out;
}

const OID = {
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  sha256WithRsa: '1.2.840.113549.1.1.11',
} as const;

/** What issuing under an existing CA certificate needs from it. */
export interface Issuer {
  /** the DER of its subject Name (becomes the issuer Name, byte for byte) */
  subject: Buffer;
  /** its subject key identifier, when it has one */
  keyId: Buffer | undefined;
  key: KeyObject;
  cert: X509Certificate;
}

/** Reads a CA certificate (PEM) and its private key into an Issuer; checks they belong together. */
export function issuerFrom(certPem: string, key: KeyObject): Issuer {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (e) {
    throw new CertificateError(`CA certificate is not a PEM certificate: ${(e as Error).message}`);
  }
  if (!cert.ca) throw new CertificateError('CA certificate is not a CA (basicConstraints cA is not true)');
  if (!cert.checkPrivateKey(key)) throw new CertificateError('CA key does not belong to the CA certificate');
  const tbs = children(readTlv(cert.raw).body)[0];
  if (!tbs) throw new CertificateError('CA certificate has no tbsCertificate');
  const f = children(tbs.body);
  const o = f[0]?.tag === 0xa0 ? 1 : 0; // [0] version is optional (v1)
  const subject = f[o + 4];
  if (subject?.tag !== 0x30) throw new CertificateError('CA certificate has no subject');
  let keyId: Buffer | undefined;
  const exts = f.find((x) => x.tag === 0xa3);
  if (exts) {
    const skiOid = oid(OID.subjectKeyIdentifier);
    for (const ext of children(readTlv(exts.body).body)) {
      const parts = children(ext.body);
      if (parts[0]?.raw.equals(skiOid)) keyId = readTlv(parts[parts.length - 1]!.body).body;
    }
  }
  return { subject: subject.raw, keyId, key, cert };
}

// ------------------------------------------------------------------------- issuing ----

export interface CertRequest {
  commonName: string;
  organization?: string;
  publicKey: KeyObject;
  /** self-signed when absent (a CA) */
  issuer?: Issuer;
  /** the signing key of a self-signed certificate */
  selfKey?: KeyObject;
  ca: boolean;
  extKeyUsage?: Array<'serverAuth' | 'clientAuth'>;
  /** DNS names and IP addresses (subjectAltName) */
  altNames?: string[];
  notBefore: Date;
  notAfter: Date;
}

function name(cn: string, o?: string): Buffer {
  const rdns = [];
  if (o !== undefined) rdns.push(set(seq(oid(OID.organization), utf8(o))));
  rdns.push(set(seq(oid(OID.commonName), utf8(cn))));
  return seq(...rdns);
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
}

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  // IPv6: expand "::" into zero groups
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  return out;
}

/** GeneralNames for subjectAltName: an IP address as iPAddress [7], anything else as dNSName [2]. */
function altNames(names: string[]): Buffer {
  return seq(
    ...names.map((n) => {
      if (isIP(n) !== 0) return tlv(0x87, ipBytes(n));
      if (!/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(n)) {
        throw new CertificateError(`subject alternative name ${JSON.stringify(n)} is neither an IP address nor a DNS name`);
      }
      return tlv(0x82, Buffer.from(n, 'ascii'));
    }),
  );
}

/** The key identifier of a public key: SHA-1 of its subjectPublicKey bits (RFC 5280 4.2.1.2 (1)). */
function keyIdentifier(publicKey: KeyObject): Buffer {
  const spki = children(readTlv(publicKey.export({ type: 'spki', format: 'der' })).body);
  const bits = spki[1];
  if (bits?.tag !== 0x03) throw new CertificateError('public key has no subjectPublicKey');
  return createHash('sha1').update(bits.body.subarray(1)).digest();
}

function signatureAlgorithm(key: KeyObject): Buffer {
  if (key.asymmetricKeyType === 'ec') return seq(oid(OID.ecdsaWithSha256));
  if (key.asymmetricKeyType === 'rsa') return seq(oid(OID.sha256WithRsa), tlv(0x05, Buffer.alloc(0)));
  throw new CertificateError(`cannot sign with a ${key.asymmetricKeyType} key (EC or RSA only)`);
}

/** Issues a certificate and returns it as PEM. */
export function issue(r: CertRequest): string {
  const signer = r.issuer?.key ?? r.selfKey;
  if (!signer) throw new CertificateError('a certificate needs an issuer or, self-signed, its own key');
  if (r.issuer === undefined && !r.ca) throw new CertificateError('only a CA certificate is self-signed here');
  if (!(r.notAfter > r.notBefore)) throw new CertificateError('notAfter must be after notBefore');
  const subject = name(r.commonName, r.organization);
  const ski = keyIdentifier(r.publicKey);
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x40; // positive, 16 bytes, never a leading zero

  const exts = [
    extension(OID.basicConstraints, true, r.ca ? seq(bool(true), tlv(0x02, Buffer.from([0]))) : seq()),
    // digitalSignature (0), plus keyCertSign (5) and cRLSign (6) for a CA; keyEncipherment
    // (2) for an RSA leaf key (TLS key exchange with RSA)
    extension(OID.keyUsage, true, namedBits(r.ca ? [0, 5, 6] : r.publicKey.asymmetricKeyType === 'rsa' ? [0, 2] : [0])),
    ...(r.extKeyUsage?.length ? [extension(OID.extKeyUsage, false, seq(...r.extKeyUsage.map((u) => oid(OID[u]))))] : []),
    ...(r.altNames?.length ? [extension(OID.subjectAltName, false, altNames(r.altNames))] : []),
    extension(OID.subjectKeyIdentifier, false, octets(ski)),
  ];
  const authorityKeyId = r.issuer ? r.issuer.keyId : ski;
  if (authorityKeyId !== undefined) exts.push(extension(OID.authorityKeyIdentifier, false, seq(tlv(0x80, authorityKeyId))));

  const algorithm = signatureAlgorithm(signer);
  const tbs = seq(
    explicit(0, tlv(0x02, Buffer.from([2]))), // v3
    unsignedInt(serial),
    algorithm,
    r.issuer?.subject ?? subject,
    seq(time(r.notBefore), time(r.notAfter)),
    subject,
    r.publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, seq(...exts)),
  );
  const signature = sign('sha256', tbs, signer);
  const der = seq(tbs, algorithm, tlv(0x03, Buffer.from([0]), signature));
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
}

/** The public key of a private key (for issue()'s publicKey). */
export function publicOf(key: KeyObject): KeyObject {
  return createPublicKey(key);
}
