import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../../cmd/install.ts';
import { configsBefore, leftovers, nodeStateOf } from '../../../cmd/install/report.ts';

// `strand install` telling the operator what it did not do: another network
// configuration that runtimes would pick first, and the node state --uninstall leaves.

let root: string;
let conf: string;
let bin: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'strand-install-report-'));
  conf = join(root, 'net.d');
  bin = join(root, 'bin');
  mkdirSync(conf);
  writeFileSync(join(root, 'strand'), 'binary');
  writeFileSync(
    join(root, 'template'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'strand',
      plugins: [
        {
          type: 'strand-bridge',
          bridge: 'strand0',
          ipMasq: true,
          ipam: { type: 'strand-ipam', ranges: [[{ subnet: '10.244.0.0/16' }]], etcd: { endpoints: '${ETCD_ENDPOINTS}', prefix: '/strand' } },
        },
      ],
    }),
  );
});

afterEach(() => rmSync(root, { recursive: true, force: true }));

async function run(args: string[]): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const code = await main(args, {
    env: { STRAND_ETCD_ENDPOINTS: 'https://10.96.0.50:2479', K8S_NODE_NAME: 'n1' },
    stdin: async () => Buffer.alloc(0),
    stdout: { write: () => {} },
    stderr: {
      write: (s: string) => {
        stderr += s;
      },
    },
  });
  return { code, stderr };
}

const installArgs = () => ['--bin-dir', bin, '--conf-dir', conf, '--template', join(root, 'template'), '--source', join(root, 'strand')];

describe('strand install: a network configuration that sorts first', () => {
  it('lists only .conf/.conflist/.json files that sort before ours, in libcni order', () => {
    for (const f of ['05-flannel.conflist', '10-bridge.conf', '099.json', '20-later.conflist', 'README', '.hidden.tmp', '00-notes.txt'])
      writeFileSync(join(conf, f), '{}');
    mkdirSync(join(conf, '01-dir.conflist'));
    expect(configsBefore(conf, '10-strand.conflist')).toEqual(['05-flannel.conflist', '099.json', '10-bridge.conf']);
    expect(configsBefore(conf, '00-strand.conflist')).toEqual([]);
    expect(configsBefore(join(root, 'absent'), '10-strand.conflist')).toEqual([]);
  });

  it('install warns, naming the file, and still installs (exit 0)', async () => {
    writeFileSync(join(conf, '05-kindnet.conflist'), '{"cniVersion":"0.3.1","name":"kindnet","plugins":[{"type":"ptp"}]}');
    const r = await run(installArgs());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`warning: ${join(conf, '05-kindnet.conflist')} sorts before 10-strand.conflist`);
    expect(r.stderr).toContain('--conf-name');
    // a name that sorts first: no warning
    const first = await run([...installArgs(), '--conf-name', '00-strand.conflist']);
    expect(first.code).toBe(0);
    expect(first.stderr).not.toContain('warning');
  });

  it('no warning when strand is the only or the first configuration', async () => {
    writeFileSync(join(conf, '99-other.conflist'), '{}');
    const r = await run(installArgs());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('warning');
  });
});

describe('strand install --uninstall: what it leaves', () => {
  it('names the bridge, agent routes, masquerade rules, etcd records and the other configurations', async () => {
    expect((await run(installArgs())).code).toBe(0);
    writeFileSync(join(conf, '99-other.conflist'), '{}');
    const r = await run(['--uninstall', '--bin-dir', bin, '--conf-dir', conf]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`removed ${join(conf, '10-strand.conflist')}`);
    expect(r.stderr).toMatch(/left in place: routes of strand agent .*ip route flush proto 115/);
    expect(r.stderr).toMatch(/left in place: masquerade rules/);
    expect(r.stderr).toMatch(/left in place: IPAM records and node blocks of network strand in etcd https:\/\/10\.96\.0\.50:2479 under \/strand/);
    expect(r.stderr).toContain(`left in place: network configurations that are not strand's: ${join(conf, '99-other.conflist')}`);
    // a second uninstall has nothing installed to report on
    const again = await run(['--uninstall', '--bin-dir', bin, '--conf-dir', conf]);
    expect(again.code).toBe(0);
    expect(again.stderr).not.toContain('left in place');
  });

  it('leftovers(): links that exist, VXLAN devices, the local IPAM directory', () => {
    const sysNet = join(root, 'sys-class-net');
    mkdirSync(sysNet);
    for (const l of ['br-a', 'strand.1', 'eth0']) mkdirSync(join(sysNet, l));
    const ipamDir = join(root, 'ipam');
    mkdirSync(join(ipamDir, 'net1'), { recursive: true });
    const state = nodeStateOf(
      JSON.stringify({
        name: 'net1',
        plugins: [
          { type: 'strand-bridge', bridge: 'br-a', ipam: { type: 'strand-ipam', dataDir: ipamDir } },
          { type: 'strand-bridge', bridge: 'br-gone' },
          { type: 'portmap' },
        ],
      }),
    );
    expect(state).toMatchObject({ bridges: ['br-a', 'br-gone'], network: 'net1', localIpamDir: join(ipamDir, 'net1'), etcd: undefined, ipMasq: false });
    const lines = leftovers(state, { sysNet });
    expect(lines.some((l) => l.startsWith('bridge br-a'))).toBe(true);
    expect(lines.some((l) => l.includes('br-gone'))).toBe(false);
    expect(lines.some((l) => l.startsWith('VXLAN device strand.1'))).toBe(true);
    expect(lines.some((l) => l.includes(`in ${join(ipamDir, 'net1')}`))).toBe(true);
    expect(lines.some((l) => l.includes('masquerade'))).toBe(false);
    // the default bridge name of strand-bridge, and a conflist that is not JSON
    expect(nodeStateOf('{"name":"x","plugins":[{"type":"strand-bridge"}]}').bridges).toEqual(['cni0']);
    expect(nodeStateOf('not json')).toMatchObject({ bridges: [], network: undefined });
  });
});

describe('strand install: etcd over https needs the client certificates', () => {
  const tlsTemplate = () =>
    writeFileSync(
      join(root, 'template'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'strand',
        plugins: [
          {
            type: 'strand-bridge',
            ipam: { type: 'strand-ipam', etcd: { endpoints: '${ETCD_ENDPOINTS}', tls: { ca: '${ETCD_CA}', cert: '${ETCD_CERT}', key: '${ETCD_KEY}' } } },
          },
        ],
      }),
    );

  it('https endpoints and an empty TLS directory (the optional Secret is missing): an error naming the Secret, nothing written', async () => {
    tlsTemplate();
    const empty = join(root, 'secret');
    mkdirSync(empty);
    const r = await run([...installArgs(), '--etcd-tls-dir', empty, '--etcd-tls-optional']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`etcd endpoints use https but ${empty} holds none of ca.crt, tls.crt, tls.key: create the Secret strand-etcd-tls (strand certs`);
    expect(existsSync(bin)).toBe(false);
    const none = await run(installArgs());
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no --etcd-tls-dir (STRAND_ETCD_TLS_DIR) given');
  });

  it('TLS files with plain-http endpoints: installed, with a warning', async () => {
    tlsTemplate();
    const dir = join(root, 'secret');
    mkdirSync(dir);
    for (const f of ['ca.crt', 'tls.crt', 'tls.key']) writeFileSync(join(dir, f), `-----BEGIN X-----\nAA==\n-----END X-----\n`);
    let stderr = '';
    const code = await main([...installArgs(), '--etcd-tls-dir', dir], {
      env: { STRAND_ETCD_ENDPOINTS: 'http://10.96.0.50:2479' },
      stdin: async () => Buffer.alloc(0),
      stdout: { write: () => {} },
      stderr: {
        write: (s: string) => {
          stderr += s;
        },
      },
    });
    expect(code, stderr).toBe(0);
    expect(stderr).toContain('warning: etcd TLS files given but every etcd endpoint is plain http://');
  });
});
