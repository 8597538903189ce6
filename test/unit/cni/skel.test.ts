import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CniError, Code } from '../../../lib/cni/errors.ts';
import { pluginMain, REQUIRED_ENV, STDIN_LIMIT, type CmdArgs, type PluginFuncs, type PluginSpec, type RequestNamespaces } from '../../../lib/cni/skel.ts';
import { SPEC_VERSIONS, gcAttachments, type NetConf, type Result } from '../../../lib/cni/types.ts';
import { NAME_MAX_LENGTH } from '../../../lib/cni/schema.ts';

interface Call {
  verb: string;
  a: CmdArgs;
  conf: NetConf;
}

interface Run {
  rc: number;
  stdout: string;
  stderr: string;
  json: any;
  calls: Call[];
  stdinReads: number;
}

const ENV = {
  CNI_CONTAINERID: 'ctr-1_a.b',
  CNI_NETNS: '/var/run/netns/s1-does-not-exist',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/opt/cni/bin:/usr/lib/cni',
};

const RESULT: Result = {
  cniVersion: '1.1.0',
  interfaces: [{ name: 'eth0', mac: '0a:58:0a:01:00:05', sandbox: '/var/run/netns/s1' }],
  ips: [{ address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 0 }],
  routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1' }],
};

function conf(extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ cniVersion: '1.1.0', name: 'net1', type: 'strand-test', ...extra });
}

type Overrides = {
  funcs?: Partial<PluginFuncs<NetConf>>;
  spec?: Partial<PluginSpec<NetConf>>;
  stdinError?: Error;
  stdinBytes?: Buffer;
  namespaces?: RequestNamespaces;
};

async function run(env: Record<string, string | undefined>, stdin: string, o: Overrides = {}): Promise<Run> {
  const calls: Call[] = [];
  let stdout = '';
  let stderr = '';
  let stdinReads = 0;
  const record =
    (verb: string) =>
    async (a: CmdArgs, c: NetConf): Promise<void> => {
      calls.push({ verb, a, conf: c });
    };
  const funcs: PluginFuncs<NetConf> = {
    add: async (a, c) => {
      calls.push({ verb: 'ADD', a, conf: c });
      return RESULT;
    },
    del: record('DEL'),
    check: record('CHECK'),
    status: record('STATUS'),
    gc: record('GC'),
    ...o.funcs,
  };
  const spec: PluginSpec<NetConf> = { name: 'strand-test', about: 'strand test plugin v0', parseConfig: (c) => c, ...o.spec };
  const rc = await pluginMain(funcs, spec, {
    env,
    stdin: async () => {
      stdinReads++;
      if (o.stdinError) throw o.stdinError;
      return o.stdinBytes ?? Buffer.from(stdin);
    },
    stdout: {
      write: (s) => {
        stdout += s;
      },
    },
    stderr: {
      write: (s) => {
        stderr += s;
      },
    },
    ...(o.namespaces ? { namespaces: o.namespaces } : {}),
  });
  let json: unknown;
  try {
    json = stdout.trim() ? JSON.parse(stdout) : undefined;
  } catch {
    json = undefined;
  }
  return { rc, stdout, stderr, json, calls, stdinReads };
}

function expectError(r: Run, code: number, msg?: RegExp): void {
  expect(r.rc).toBe(1);
  expect(r.json).toMatchObject({ code });
  expect(typeof r.json.msg).toBe('string');
  if (msg) expect(`${r.json.msg} ${r.json.details ?? ''}`).toMatch(msg);
  expect(r.calls).toEqual([]);
  expect(r.stdout).not.toMatch(/\n\s+at /); // never a stack trace on stdout
}

describe('VERSION', () => {
  it('prints the seven versions without reading stdin or needing other env', async () => {
    const r = await run({ CNI_COMMAND: 'VERSION' }, 'not json at all');
    expect(r.rc).toBe(0);
    expect(r.json).toEqual({ cniVersion: '1.1.0', supportedVersions: [...SPEC_VERSIONS] });
    expect(r.stdinReads).toBe(0);
  });
});

describe('CNI_COMMAND', () => {
  it('missing: code 4, about text on stderr', async () => {
    const r = await run({ ...ENV }, conf());
    expectError(r, Code.InvalidEnvironment, /CNI_COMMAND/);
    expect(r.stderr).toContain('strand test plugin v0');
    expect(r.stderr).toContain('1.1.0');
  });
  it.each(['add', 'FOO', 'VERSIONS'])('unknown %j: code 4', async (cmd) => {
    expectError(await run({ ...ENV, CNI_COMMAND: cmd }, conf()), Code.InvalidEnvironment, new RegExp(`unknown CNI_COMMAND: ${cmd}`));
  });
});

describe('required environment per verb', () => {
  const verbs = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC'] as const;
  for (const verb of verbs) {
    for (const v of ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH']) {
      const required = REQUIRED_ENV[verb].includes(v);
      it(`${verb} without ${v}: ${required ? 'code 4 naming it' : 'accepted'}`, async () => {
        const env: Record<string, string | undefined> = { ...ENV, CNI_COMMAND: verb };
        delete env[v];
        const r = await run(env, conf());
        if (required) {
          expectError(r, Code.InvalidEnvironment, new RegExp(v));
        } else {
          expect(r.rc).toBe(0);
          expect(r.calls.map((c) => c.verb)).toEqual([verb]);
        }
      });
    }
  }
  it('matches the spec table', () => {
    expect(REQUIRED_ENV.ADD).toEqual(['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH']);
    expect(REQUIRED_ENV.CHECK).toEqual(REQUIRED_ENV.ADD);
    expect(REQUIRED_ENV.DEL).toEqual(['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH']);
    expect(REQUIRED_ENV.STATUS).toEqual(['CNI_PATH']);
    expect(REQUIRED_ENV.GC).toEqual(['CNI_PATH']);
    expect(REQUIRED_ENV.VERSION).toEqual([]);
  });
  it('lists every missing variable', async () => {
    const r = await run({ CNI_COMMAND: 'ADD' }, conf());
    expectError(r, Code.InvalidEnvironment, /\[CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH\]/);
  });
  it('an empty variable counts as missing', async () => {
    expectError(await run({ ...ENV, CNI_COMMAND: 'ADD', CNI_PATH: '' }, conf()), Code.InvalidEnvironment, /CNI_PATH/);
  });
});

describe('container ID and interface name', () => {
  it.each(['-abc', '.abc', 'a b', 'a/b', 'a;b', 'ctr\n', 'ä'])('container ID %j: code 4', async (id) => {
    expectError(await run({ ...ENV, CNI_COMMAND: 'ADD', CNI_CONTAINERID: id }, conf()), Code.InvalidEnvironment, /CNI_CONTAINERID/);
  });
  it.each(['a', 'A9', '0abc.def_ghi-jkl', 'f'.repeat(64)])('container ID %j: accepted', async (id) => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD', CNI_CONTAINERID: id }, conf());
    expect(r.rc).toBe(0);
    expect(r.calls[0]?.a.containerId).toBe(id);
  });
  const badIfNames = ['x'.repeat(16), 'é'.repeat(8), '.', '..', 'a/b', 'a:b', 'a b', 'a\tb', 'eth0\n', 'a\u00a0b', 'a\u0085b'];
  for (const verb of ['ADD', 'DEL', 'CHECK']) {
    it.each(badIfNames)(`${verb} interface name %j: code 4`, async (name) => {
      expectError(await run({ ...ENV, CNI_COMMAND: verb, CNI_IFNAME: name }, conf()), Code.InvalidEnvironment, /CNI_IFNAME/);
    });
  }
  it.each(['x'.repeat(15), 'eth0.100', 'net1-a_b', 'é'.repeat(7)])('interface name %j: accepted', async (name) => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD', CNI_IFNAME: name }, conf());
    expect(r.rc).toBe(0);
  });
  it('GC and STATUS do not look at CNI_IFNAME / CNI_CONTAINERID', async () => {
    for (const verb of ['GC', 'STATUS']) {
      const r = await run({ CNI_COMMAND: verb, CNI_PATH: '/x', CNI_IFNAME: 'a/b', CNI_CONTAINERID: '-' }, conf());
      expect(r.rc).toBe(0);
    }
  });
});

describe('stdin and JSON', () => {
  it('stdin read failure: code 5', async () => {
    expectError(await run({ ...ENV, CNI_COMMAND: 'ADD' }, '', { stdinError: new Error('EIO') }), Code.IoFailure);
  });
  it.each(['', '{', '{"cniVersion":"1.1.0",}', 'nul', '\u0000'])('malformed JSON %j: code 6', async (s) => {
    expectError(await run({ ...ENV, CNI_COMMAND: 'ADD' }, s), Code.DecodingFailure);
  });
  it.each(['[]', 'null', '"x"', '42'])('JSON that is not an object %j: code 6', async (s) => {
    expectError(await run({ ...ENV, CNI_COMMAND: 'ADD' }, s), Code.DecodingFailure);
  });
});

describe('cniVersion', () => {
  it('missing: code 1', async () => {
    expectError(await run({ ...ENV, CNI_COMMAND: 'ADD' }, JSON.stringify({ name: 'n', type: 't' })), Code.IncompatibleVersion, /cniVersion/);
  });
  it.each(['0.5.0', '2.0.0', '1.1', 'latest', 1, null, ''])('unsupported %j: code 1', async (v) => {
    expectError(await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf({ cniVersion: v })), Code.IncompatibleVersion);
  });
  it('a plugin limited to some versions rejects the others', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf({ cniVersion: '0.3.1' }), { spec: { versions: ['1.0.0', '1.1.0'] } });
    expectError(r, Code.IncompatibleVersion, /0\.3\.1/);
    const v = await run({ CNI_COMMAND: 'VERSION' }, '', { spec: { versions: ['1.0.0', '1.1.0'] } });
    expect(v.json.supportedVersions).toEqual(['1.0.0', '1.1.0']);
  });
  it('cniVersions: the highest supported version is used', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf({ cniVersion: '9.9.9', cniVersions: ['0.3.1', '1.0.0', '3.0.0'] }));
    expect(r.rc).toBe(0);
    expect(r.calls[0]?.conf.cniVersion).toBe('1.0.0');
    expect(r.json.cniVersion).toBe('1.0.0');
    expect(r.json.ips[0]).not.toHaveProperty('version');
  });
  it('cniVersions without any supported entry: code 1', async () => {
    expectError(await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf({ cniVersion: '3.0.0', cniVersions: ['2.0.0'] })), Code.IncompatibleVersion);
  });
  it('error JSON carries the config version', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf({ cniVersion: '0.4.0', name: 'bad name' }));
    expectError(r, Code.InvalidNetworkConfig);
    expect(r.json.cniVersion).toBe('0.4.0');
  });
});

describe('verb gating', () => {
  const cases: Array<[string, string, boolean]> = [
    ['CHECK', '0.3.1', false],
    ['CHECK', '0.2.0', false],
    ['CHECK', '0.4.0', true],
    ['CHECK', '1.1.0', true],
    ['STATUS', '1.0.0', false],
    ['STATUS', '1.1.0', true],
    ['GC', '0.4.0', false],
    ['GC', '1.0.0', false],
    ['GC', '1.1.0', true],
    ['DEL', '0.1.0', true],
    ['ADD', '0.1.0', true],
  ];
  it.each(cases)('%s with cniVersion %s allowed: %s', async (verb, v, ok) => {
    const r = await run({ ...ENV, CNI_COMMAND: verb }, conf({ cniVersion: v }));
    if (ok) {
      expect(r.rc).toBe(0);
      expect(r.calls.map((c) => c.verb)).toEqual([verb]);
    } else {
      expectError(r, Code.IncompatibleVersion, new RegExp(`does not allow ${verb}`));
    }
  });
});

describe('invalid fields: code 7 naming the field', () => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['name missing', { name: undefined }, 'name'],
    ['name with a space', { name: 'my net' }, 'name'],
    ['name starting with a dot', { name: '.net' }, 'name'],
    ['type missing', { type: undefined }, 'type'],
    ['type with a slash', { type: '../bin/sh' }, 'type'],
    ['ipam not an object', { ipam: 'host-local' }, 'ipam'],
    ['ipam.type not a string', { ipam: { type: 7 } }, 'ipam.type'],
    ['capabilities value not boolean', { capabilities: { mac: 'yes' } }, 'capabilities.mac'],
    ['args.cni not an object', { args: { cni: [] } }, 'args.cni'],
    ['runtimeConfig not an object', { runtimeConfig: 1 }, 'runtimeConfig'],
    ['prevResult not an object', { prevResult: 'x' }, 'prevResult'],
    ['dns nameserver not an IP', { dns: { nameservers: ['10.0.0.1', 'dns.example'] } }, 'dns.nameservers[1]'],
    ['valid-attachments entry without ifname', { 'cni.dev/valid-attachments': [{ containerID: 'a' }] }, '["cni.dev/valid-attachments"][0].ifname'],
  ];
  it.each(cases)('%s', async (_n, extra, field) => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf(extra));
    expectError(r, Code.InvalidNetworkConfig);
    expect(r.json.msg).toContain(field);
  });
  it('a name longer than 255 characters (NAME_MAX): code 7 naming name, the value clipped in the answer', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf({ name: 'a'.repeat(8 << 20) }));
    expectError(r, Code.InvalidNetworkConfig, /name: must NOT have more than 255 characters/);
    expect(r.json.msg).toBe('invalid config field name');
    expect(r.stdout.length).toBeLessThan(1000);
    expect((await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf({ name: 'a'.repeat(NAME_MAX_LENGTH) }))).rc).toBe(0);
  });
  it('a bad prevResult field is named with its path', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf({ prevResult: { cniVersion: '1.1.0', ips: [{ address: '10.0.0.300/24' }] } }));
    expectError(r, Code.InvalidNetworkConfig);
    expect(r.json.msg).toContain('prevResult.ips[0].address');
  });
  it('plugin-specific validation errors pass through', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf(), {
      spec: {
        parseConfig: () => {
          throw new CniError(Code.InvalidNetworkConfig, 'invalid config field mtu', 'mtu: must be <= 65535');
        },
      },
    });
    expectError(r, Code.InvalidNetworkConfig, /mtu/);
  });
  it('plugin fields pass through untouched', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf({ bridge: 'cni0', mtu: 1400, ipam: {} }));
    expect(r.rc).toBe(0);
    expect(r.calls[0]?.conf).toMatchObject({ bridge: 'cni0', mtu: 1400, ipam: {} });
  });
});

describe('dispatch and results', () => {
  for (const v of SPEC_VERSIONS) {
    it(`ADD prints the result in the config's version ${v}`, async () => {
      const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf({ cniVersion: v }));
      expect(r.rc).toBe(0);
      expect(r.json.cniVersion).toBe(v);
      if (v === '0.1.0' || v === '0.2.0') {
        expect(r.json).toEqual({ cniVersion: v, ip4: { ip: '10.1.0.5/24', gateway: '10.1.0.1', routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1' }] } });
      } else if (v.startsWith('0.')) {
        expect(r.json.ips).toEqual([{ version: '4', interface: 0, address: '10.1.0.5/24', gateway: '10.1.0.1' }]);
      } else {
        expect(r.json.ips).toEqual([{ interface: 0, address: '10.1.0.5/24', gateway: '10.1.0.1' }]);
      }
    });
  }
  it('passes CmdArgs from the environment', async () => {
    const stdin = conf();
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD', CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=p', CNI_PATH: '/a::/b' }, stdin);
    const a = r.calls[0]?.a;
    expect(a).toMatchObject({
      containerId: ENV.CNI_CONTAINERID,
      netns: ENV.CNI_NETNS,
      ifName: 'eth0',
      args: 'IgnoreUnknown=1;K8S_POD_NAME=p',
      path: ['/a', '/b'],
      verb: 'ADD',
    });
    expect(a?.stdinData.toString()).toBe(stdin);
    expect(a?.env['CNI_COMMAND']).toBe('ADD');
    expect(typeof a?.log?.info).toBe('function');
  });
  it('DEL without CNI_NETNS runs with an empty netns and prints nothing', async () => {
    const env: Record<string, string | undefined> = { ...ENV, CNI_COMMAND: 'DEL' };
    delete env['CNI_NETNS'];
    const r = await run(env, conf());
    expect(r.rc).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.calls[0]?.a.netns).toBe('');
  });
  it('prevResult of any version reaches the handler in the 1.1.0 form', async () => {
    const prev020 = { cniVersion: '0.2.0', ip4: { ip: '10.1.0.5/16', gateway: '10.1.0.1' } };
    const r = await run({ ...ENV, CNI_COMMAND: 'CHECK' }, conf({ cniVersion: '0.4.0', prevResult: prev020 }));
    expect(r.rc).toBe(0);
    expect(r.calls[0]?.conf.prevResult).toEqual({ cniVersion: '1.1.0', ips: [{ address: '10.1.0.5/16', gateway: '10.1.0.1' }] });
    // the spec's chained example: prevResult without cniVersion takes the config's
    const prev = { ips: [{ version: '4', address: '10.1.0.5/16', interface: 2 }], interfaces: [{ name: 'a' }, { name: 'b' }, { name: 'eth0', sandbox: '/x' }] };
    const r2 = await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf({ cniVersion: '0.3.1', prevResult: prev }));
    expect(r2.calls[0]?.conf.prevResult?.ips).toEqual([{ address: '10.1.0.5/16', interface: 2 }]);
  });
  it('GC sees the valid attachments', async () => {
    const att = [{ containerID: 'c1', ifname: 'eth0' }];
    const r = await run({ CNI_COMMAND: 'GC', CNI_PATH: '/x' }, conf({ 'cni.dev/valid-attachments': att }));
    expect(r.rc).toBe(0);
    expect(gcAttachments(r.calls[0]!.conf)).toEqual(att);
  });
  it('a CniError from a handler is printed with its code', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'DEL' }, conf({ cniVersion: '1.0.0' }), {
      funcs: {
        del: async () => {
          throw new CniError(Code.TryAgainLater, 'store unavailable', 'etcd: deadline exceeded');
        },
      },
    });
    expect(r.rc).toBe(1);
    expect(r.json).toEqual({ cniVersion: '1.0.0', code: 11, msg: 'store unavailable', details: 'etcd: deadline exceeded' });
  });
  it('anything else is 999 with the message in details; the stack goes to stderr only', async () => {
    class NetlinkError extends Error {
      override readonly name = 'NetlinkError';
    }
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf(), {
      funcs: {
        add: async () => {
          throw new NetlinkError('RTM_NEWLINK: EEXIST', { cause: new Error('inner cause') });
        },
      },
    });
    expect(r.rc).toBe(1);
    expect(r.json).toEqual({ cniVersion: '1.1.0', code: 999, msg: 'internal error', details: 'NetlinkError: RTM_NEWLINK: EEXIST' });
    expect(r.stdout).not.toContain('at ');
    expect(r.stderr).toMatch(/NetlinkError: RTM_NEWLINK: EEXIST\n\s+at /);
    expect(r.stderr).toContain('caused by: Error: inner cause');
  });
  it('a thrown non-Error is 999 too', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'STATUS' }, conf(), {
      funcs: {
        status: async () => {
          throw 'a string'; // eslint-disable-line no-throw-literal
        },
      },
    });
    expect(r.json).toMatchObject({ code: 999, details: 'a string' });
  });
  it('a result that cannot be expressed in the config version is an error, not a crash', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf({ cniVersion: '0.2.0' }), {
      funcs: { add: async () => ({ cniVersion: '1.1.0', interfaces: [{ name: 'eth0' }] }) },
    });
    expect(r.rc).toBe(1);
    expect(r.json.code).toBe(1);
  });
});

describe('namespace sanity', () => {
  it("CNI_NETNS naming the plugin's own namespace: code 4 naming CNI_NETNS", async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD', CNI_NETNS: '/proc/self/ns/net' }, conf());
    expectError(r, Code.InvalidEnvironment, /CNI_NETNS.*should not be the same/);
  });
  it('CNI_NETNS_OVERRIDE=1 allows it', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD', CNI_NETNS: '/proc/self/ns/net', CNI_NETNS_OVERRIDE: '1' }, conf());
    expect(r.rc).toBe(0);
  });
});

describe('logging', () => {
  let dir = '';
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = '';
  });
  it('STRAND_LOG_FILE receives the log, stderr stays empty', async () => {
    dir = mkdtempSync(join(tmpdir(), 's1-log-'));
    const file = join(dir, 'strand.log');
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD', STRAND_LOG_FILE: file }, conf({ name: 'bad name' }));
    expect(r.rc).toBe(1);
    expect(r.stderr).toBe('');
    expect(readFileSync(file, 'utf8')).toMatch(/ERROR strand-test ADD ctr-1_a\.b\/eth0 \+\d+\.\dms: ADD ctr-1_a\.b\/eth0 failed with code 7/);
  });
  it('a logFile config field is used for handler logs', async () => {
    dir = mkdtempSync(join(tmpdir(), 's1-log-'));
    const file = join(dir, 'conf.log');
    const r = await run({ ...ENV, CNI_COMMAND: 'DEL' }, conf({ logFile: file }), {
      funcs: {
        del: async (a) => {
          a.log?.info('deleting');
        },
      },
    });
    expect(r.rc).toBe(0);
    expect(readFileSync(file, 'utf8')).toMatch(/INFO strand-test DEL ctr-1_a\.b\/eth0 \+\d+\.\dms: deleting\n/);
    expect(r.stderr).toBe('');
  });
  it('an unwritable log file falls back to stderr', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD', STRAND_LOG_FILE: '/proc/s1-no/such/file' }, conf({ name: '' }));
    expect(r.rc).toBe(1);
    expect(r.stderr).toContain('cannot write log file');
    expect(r.stderr).toContain('failed with code 7');
  });
  it('logLevel debug is honoured; the default is info into a file, warn on stderr', async () => {
    const funcs = {
      del: async (a: CmdArgs) => {
        a.log?.debug('detail');
        a.log?.info('summary');
        a.log?.warn('careful');
      },
    };
    const quiet = await run({ ...ENV, CNI_COMMAND: 'DEL' }, conf(), { funcs });
    expect(quiet.stderr).toMatch(/^\S+ WARN strand-test DEL ctr-1_a\.b\/eth0 \+\d+\.\dms: careful\n$/);
    const loud = await run({ ...ENV, CNI_COMMAND: 'DEL' }, conf({ logLevel: 'debug' }), { funcs });
    expect(loud.stderr).toMatch(
      /DEBUG strand-test DEL ctr-1_a\.b\/eth0 \+\d+\.\dms: detail\n.* INFO .*summary\n.* WARN .*careful\n.* INFO .*: DEL succeeded\n$/,
    );
    dir = mkdtempSync(join(tmpdir(), 's1-log-'));
    const file = join(dir, 'f.log');
    const inFile = await run({ ...ENV, CNI_COMMAND: 'DEL' }, conf({ logFile: file }), { funcs });
    expect(inFile.stderr).toBe('');
    expect(readFileSync(file, 'utf8')).toMatch(
      /^\S+ INFO .*summary\n\S+ WARN .*careful\n\S+ INFO strand-test DEL ctr-1_a\.b\/eth0 \+\d+\.\dms: DEL succeeded\n$/,
    );
  });

  it('every line names the verb and the container; STATUS and GC have no container', async () => {
    const funcs = { status: async (a: CmdArgs) => a.log?.warn('status line') };
    const r = await run({ CNI_COMMAND: 'STATUS', CNI_PATH: '/bin' }, conf(), { funcs });
    expect(r.stderr).toMatch(/WARN strand-test STATUS \+\d+\.\dms: status line\n$/);
  });

  it('rotation settings are validated (logFileMaxSize, logFileMaxFiles)', async () => {
    expectError(await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf({ logFileMaxSize: 10 })), Code.InvalidNetworkConfig, /logFileMaxSize/);
    expectError(await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf({ logFileMaxFiles: 0 })), Code.InvalidNetworkConfig, /logFileMaxFiles/);
  });
});

describe('stdin limit', () => {
  it(`a network config over ${STDIN_LIMIT} bytes is code 5, not parsed`, async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, '', { stdinBytes: Buffer.alloc(STDIN_LIMIT + 1, 0x20) });
    expectError(r, Code.IoFailure, /error reading from stdin the network config is larger than 67108864 bytes/);
  });
  it('exactly the limit is read (and here fails as the JSON it is not)', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, '', { stdinBytes: Buffer.alloc(STDIN_LIMIT, 0x20) });
    expectError(r, Code.DecodingFailure);
  });
});

describe('request namespaces (strand daemon)', () => {
  const ns = (pod: string | undefined, host = '/proc/self/ns/net'): RequestNamespaces => ({
    host,
    hostIsOwn: true,
    mntIsOwn: true,
    fds: { host: 0, mnt: 0 },
    ...(pod ? { pod } : {}),
  });
  it("the own-netns check compares the pod's descriptor with the caller's namespace, not CNI_NETNS", async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf(), { namespaces: ns('/proc/self/ns/net') });
    expectError(r, Code.InvalidEnvironment, /own network namespace/);
    expect(r.json.details).toContain(ENV.CNI_NETNS); // named as the runtime gave it
  });
  it('a pod namespace other than the caller passes the check and reaches the plugin with its namespaces', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, conf(), { namespaces: ns('/proc/self/ns/user') });
    expect(r.rc).toBe(0);
    expect(r.calls[0]!.a.netns).toBe(ENV.CNI_NETNS);
    expect(r.calls[0]!.a.namespaces?.pod).toBe('/proc/self/ns/user');
  });
  it('a CNI_NETNS the shim could not open is left to the plugin (which reports code 4)', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'DEL' }, conf(), { namespaces: { ...ns(undefined), podErrno: 2 } });
    expect(r.rc).toBe(0);
    expect(r.calls[0]!.a.namespaces?.podErrno).toBe(2);
  });
});
