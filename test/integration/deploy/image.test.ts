import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireStrandPlugin } from '../../helpers/cnitool.ts';
import { Containerd, CTR } from '../../helpers/containerd.ts';
import { NetnsSet } from '../../helpers/netns.ts';
import { repoRoot } from '../../helpers/run-plugin.ts';

// scripts/image.sh output, read the way each loader reads it: as a docker-archive
// (manifest.json: config and layers by path, RepoTags), as an OCI image layout
// (index.json -> manifest -> config and layers by digest), and imported into a real
// containerd with the command `kind load image-archive` runs on each node (ctr import
// from stdin, --all-platforms --digests --snapshotter), then run.

const NAME = 'docker.io/library/strand:dp-image-test';
let work: string;
let tarball: string;
let tree: string;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(() => {
  requireStrandPlugin('strand');
  work = mkdtempSync(join(tmpdir(), 'strand-image-test-'));
  tarball = join(work, 'strand-image.tar');
  execFileSync('bash', [join(repoRoot, 'scripts', 'image.sh'), '--out', tarball, '--name', NAME], { stdio: ['ignore', 'ignore', 'pipe'] });
  tree = join(work, 'tree');
  mkdirSync(tree);
  execFileSync('tar', ['-xf', tarball, '-C', tree]);
}, 300_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const blob = (path: string) => readFileSync(join(tree, path));
const json = (path: string) => JSON.parse(blob(path).toString('utf8'));

describe('scripts/image.sh: the tarball', () => {
  it('is a docker-archive: manifest.json names the config and gzip layers by path, their diff_ids match, RepoTags is the name', () => {
    const manifest = json('manifest.json');
    expect(manifest).toHaveLength(1);
    const [m] = manifest;
    expect(m.RepoTags).toEqual([NAME]);
    const config = json(m.Config);
    expect(config).toMatchObject({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers' } });
    expect(config.config.Entrypoint).toEqual(['/strand']);
    expect(config.config.Cmd).toEqual(['install', '--sleep']);
    expect(m.Layers).toHaveLength(config.rootfs.diff_ids.length);
    for (const [i, path] of (m.Layers as string[]).entries()) {
      const compressed = blob(path);
      expect(compressed.subarray(0, 2).toString('hex'), 'gzip magic').toBe('1f8b');
      const layer = gunzipSync(compressed);
      expect(`sha256:${sha256(layer)}`).toBe(config.rootfs.diff_ids[i]);
      // compressed: the 120 MB executable shrinks to well under half
      expect(compressed.length).toBeLessThan(layer.length * 0.5);
      expect(`sha256:${sha256(compressed)}`).toBe(`sha256:${path.split('/').pop()}`);
    }
  });

  it('is an OCI image layout with the same config and layer, the layer typed tar+gzip', () => {
    expect(json('oci-layout')).toEqual({ imageLayoutVersion: '1.0.0' });
    const index = json('index.json');
    const [desc] = index.manifests;
    expect(desc.annotations['io.containerd.image.name']).toBe(NAME);
    const manifestBytes = blob(`blobs/sha256/${desc.digest.slice(7)}`);
    expect(sha256(manifestBytes)).toBe(desc.digest.slice(7));
    expect(manifestBytes.length).toBe(desc.size);
    const manifest = JSON.parse(manifestBytes.toString('utf8'));
    expect(manifest.layers.map((l: { mediaType: string }) => l.mediaType)).toEqual(['application/vnd.oci.image.layer.v1.tar+gzip']);
    const docker = json('manifest.json')[0];
    expect(`blobs/sha256/${manifest.config.digest.slice(7)}`).toBe(docker.Config);
    expect(manifest.layers.map((l: { digest: string }) => `blobs/sha256/${l.digest.slice(7)}`)).toEqual(docker.Layers);
    for (const l of manifest.layers) expect(statSync(join(tree, `blobs/sha256/${l.digest.slice(7)}`)).size).toBe(l.size);
  });

  it('the layer holds /strand, /strand-lib/libatomic.so.1 and the loader, and nothing from the build machine path', () => {
    const layerPath = json('manifest.json')[0].Layers[0];
    const files = execFileSync('tar', ['-tzf', join(tree, layerPath)], { encoding: 'utf8', maxBuffer: 16 << 20 }).split('\n');
    for (const f of ['./strand', './strand-lib/libatomic.so.1', './lib64/ld-linux-x86-64.so.2', './tmp/']) expect(files, f).toContain(f);
    expect(files.filter((f) => f.includes('dist/'))).toEqual([]);
  });

  it("the default name carries package.json's version, as the manifests' image does", () => {
    const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'));
    const script = readFileSync(join(repoRoot, 'scripts', 'image.sh'), 'utf8');
    expect(script).toContain('name=${name:-docker.io/library/strand:$version}');
    expect(version).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('scripts/image.sh: loaded into containerd', () => {
  let netns: NetnsSet | undefined;
  let ctd: Containerd | undefined;

  afterEach(async () => {
    await ctd?.stop();
    ctd = undefined;
    netns?.cleanup();
    netns = undefined;
  });

  async function start(port: number): Promise<Containerd> {
    netns = new NetnsSet();
    const host = netns.add('h');
    ctd = await Containerd.start({ hostNs: host, streamPort: port, cgroupParent: `/strand-test-${netns.prefix}` });
    return ctd;
  }

  /** What `kind load image-archive` runs on a node: ctr import from stdin. */
  function kindLoad(c: Containerd, file: string): void {
    execFileSync(CTR, ['-a', c.socket, '--namespace=k8s.io', 'images', 'import', '--all-platforms', '--digests', '--snapshotter=overlayfs', '-'], {
      input: readFileSync(file),
      stdio: ['pipe', 'pipe', 'pipe'],
      maxBuffer: 16 << 20,
      timeout: 180_000,
    });
  }

  function runVersion(c: Containerd, id: string): string {
    return c.ctr(['run', '--rm', '--runc-root', join(c.dir, 'runc-ctr'), '--fifo-dir', join(c.dir, 'fifo'), NAME, id, '/strand', 'version']);
  }

  it('`kind load image-archive` (ctr import from stdin): the image is listed under its name and runs', async () => {
    const c = await start(36110);
    kindLoad(c, tarball);
    expect(c.ctr(['images', 'ls', '-q'])).toContain(NAME);
    expect(runVersion(c, `${netns!.prefix}-v`)).toMatch(/^strand \d+\.\d+\.\d+/);
    expect(c.ctr(['containers', 'ls', '-q']).trim()).toBe('');
  });

  it('`strand certs` runs in the image (as docs/install.md shows with docker run) and writes the Secrets into a mounted directory', async () => {
    const c = await start(36130);
    c.importImage(tarball);
    const out = join(work, 'certs-from-image');
    mkdirSync(out);
    c.ctr([
      'run',
      '--rm',
      '--runc-root',
      join(c.dir, 'runc-ctr'),
      '--fifo-dir',
      join(c.dir, 'fifo'),
      '--mount',
      `type=bind,src=${out},dst=/certs,options=rbind:rw`,
      NAME,
      `${netns!.prefix}-c`,
      '/strand',
      'certs',
      '--dir',
      '/certs/out',
    ]);
    expect(readdirSync(join(out, 'out')).sort()).toEqual(['ca.crt', 'ca.key', 'client.crt', 'client.key', 'secrets.yaml', 'server.crt', 'server.key']);
    const server = new X509Certificate(readFileSync(join(out, 'out', 'server.crt')));
    expect(server.checkIssued(new X509Certificate(readFileSync(join(out, 'out', 'ca.crt'))))).toBe(true);
    expect(server.checkIP('10.96.0.50')).toBe('10.96.0.50');
  });

  it('the docker-archive view alone (manifest.json + blobs, no OCI index), as docker load reads it: containerd imports and runs it', async () => {
    const dockerOnly = join(work, 'docker-only.tar');
    execFileSync('cp', [tarball, dockerOnly]);
    execFileSync('tar', ['--delete', '-f', dockerOnly, 'oci-layout', 'index.json']);
    expect(execFileSync('tar', ['-tf', dockerOnly], { encoding: 'utf8' })).not.toMatch(/index\.json|oci-layout/);
    const c = await start(36120);
    c.importImage(dockerOnly);
    expect(c.ctr(['images', 'ls', '-q'])).toContain(NAME);
    expect(runVersion(c, `${netns!.prefix}-d`)).toMatch(/^strand \d+\.\d+\.\d+/);
    expect(existsSync(dockerOnly)).toBe(true);
  });
});
