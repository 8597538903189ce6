// Bad input to the built plugin binaries: every case is answered by a CNI error object on
// stdout with exit status 1 and the code the spec assigns (issue 2, item 5). None of
// these requests gets as far as touching the network, so they run for every plugin name.
import { describe, expect, it } from 'vitest';
import { runPlugin, type PluginEnv } from '../../helpers/run-plugin.ts';
import { errorText, expectCniError, PLUGINS } from './expect-cni.ts';

// Validation of these requests happens before any network work, so the container and
// netns need not exist.
const env = {
  containerId: 'strand-foundation-test',
  netns: '/run/netns/strand-foundation-does-not-exist',
  ifName: 'eth0',
} as const;

function conf(plugin: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { cniVersion: '1.1.0', name: 'foundation-net', type: plugin, ...extra };
}

function add(plugin: string, stdin: string | object, over: Partial<PluginEnv> = {}) {
  return runPlugin(plugin, { command: 'ADD', ...env, ...over }, stdin);
}

describe.each(PLUGINS)('%s: bad input', (plugin) => {
  it('malformed JSON -> 6', async () => {
    for (const bad of ['{', '{"cniVersion": "1.1.0", "name": ', 'not json', '[1,2', '']) {
      expectCniError(await add(plugin, bad), 6);
    }
  });

  it('a config that is JSON but not an object -> 6 or 7', async () => {
    for (const bad of ['[]', '42', '"str"', 'null']) {
      const r = await add(plugin, bad);
      expect(r.json?.code, `${bad}: ${r.stdout}`).toBeOneOf([6, 7]);
      expectCniError(r, r.json.code);
    }
  });

  it('missing cniVersion -> 1', async () => {
    const c = conf(plugin);
    delete c['cniVersion'];
    expectCniError(await add(plugin, c), 1);
  });

  it('unsupported cniVersion -> 1', async () => {
    for (const v of ['9.9.9', '2.0.0', '0.0.1']) {
      const e = expectCniError(await add(plugin, conf(plugin, { cniVersion: v })), 1);
      expect(errorText(e)).toContain(v);
    }
  });

  it('missing required environment -> 4, naming the variable', async () => {
    const cases: Array<[keyof typeof env, string]> = [
      ['containerId', 'CNI_CONTAINERID'],
      ['netns', 'CNI_NETNS'],
      ['ifName', 'CNI_IFNAME'],
    ];
    for (const [key, variable] of cases) {
      const partial: Partial<PluginEnv> = { ...env };
      delete partial[key];
      const e = expectCniError(await runPlugin(plugin, { command: 'ADD', ...partial }, conf(plugin)), 4);
      expect(errorText(e), variable).toContain(variable);
    }
  });

  it('missing CNI_COMMAND or an unknown one -> 4', async () => {
    expectCniError(await runPlugin(plugin, { command: 'FROB', ...env }, conf(plugin)), 4);
    expectCniError(await runPlugin(plugin, { command: '', ...env }, conf(plugin)), 4);
  });

  it('an invalid field -> 7, naming the field', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ name: 'bad name!' }, 'name'],
      [{ name: 42 }, 'name'],
      [{ logLevel: 'loud' }, 'logLevel'],
      [{ dns: { nameservers: ['not-an-address'] } }, 'nameservers'],
      [{ capabilities: { ips: 'yes' } }, 'capabilities'],
    ];
    for (const [extra, field] of cases) {
      const e = expectCniError(await add(plugin, conf(plugin, extra)), 7);
      expect(errorText(e), JSON.stringify(extra)).toContain(field);
    }
  });

  it('a bad interface name -> 4 or 7', async () => {
    for (const ifName of ['a/b', 'sixteen-chars-xx', '.', '..', 'eth 0', 'eth:0']) {
      const r = await add(plugin, conf(plugin), { ifName });
      expect(r.json?.code, `${ifName}: ${r.stdout}`).toBeOneOf([4, 7]);
      expectCniError(r, r.json.code);
    }
  });

  it('a gated verb with a too old config version -> 1', async () => {
    expectCniError(await runPlugin(plugin, { command: 'CHECK', ...env }, conf(plugin, { cniVersion: '0.3.1' })), 1);
    expectCniError(await runPlugin(plugin, { command: 'STATUS' }, conf(plugin, { cniVersion: '1.0.0' })), 1);
  });

  it('a well-formed request is answered too: a CNI error here, never a crash', async () => {
    // The netns does not exist, so no plugin can succeed; what matters is the form.
    const r = await add(plugin, conf(plugin, { ipam: {} }));
    expectCniError(r, r.json?.code);
    expect(r.stderr).not.toMatch(/uncaught|unhandled/i);
  });
});
