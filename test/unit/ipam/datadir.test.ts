// A dataDir that cannot be a directory (a regular file in the way) is a config error
// naming ipam.dataDir (code 7), not an unreachable store (11, which runtimes retry).
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../../ipam/main.ts';
import { DataDirError, LocalStore } from '../../../ipam/store/local.ts';

let dir: string;
let file: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ha-datadir-'));
  file = join(dir, 'regular-file');
  writeFileSync(file, 'not a directory\n');
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function run(verb: string, dataDir: string): Promise<{ rc: number; json: { code: number; msg: string; details?: string } }> {
  let out = '';
  const env: Record<string, string> = {
    CNI_COMMAND: verb,
    CNI_PATH: '/nonexistent',
    CNI_CONTAINERID: 'c1',
    CNI_IFNAME: 'eth0',
    CNI_NETNS: '/run/netns/ha-none',
  };
  const conf = { cniVersion: '1.1.0', name: 'net1', type: 'strand-ipam', ipam: { type: 'strand-ipam', dataDir, ranges: [[{ subnet: '10.1.0.0/24' }]] } };
  const rc = await main({
    env,
    stdin: async () => Buffer.from(JSON.stringify(conf)),
    stdout: {
      write: (s: string) => {
        out += s;
      },
    },
    stderr: { write: () => undefined },
  });
  return { rc, json: JSON.parse(out || '{}') };
}

describe('ipam dataDir that is not a directory', () => {
  it('the local store throws DataDirError (not StoreUnavailableError)', async () => {
    const store = new LocalStore(file);
    const e = await store.exclusive('net1', async () => undefined).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DataDirError);
    expect((e as DataDirError).code).toBe('ENOTDIR');
    const below = await new LocalStore(join(file, 'sub')).ping('net1').catch((x: unknown) => x);
    expect(below).toBeInstanceOf(DataDirError);
  });

  it.each(['ADD', 'DEL', 'CHECK'])('%s: code 7 naming ipam.dataDir; nothing written', async (verb) => {
    const r = await run(verb, verb === 'CHECK' ? join(file, 'below') : file);
    expect(r.rc).toBe(1);
    expect(r.json.code).toBe(7);
    expect(r.json.msg).toBe('invalid config field ipam.dataDir');
    expect(r.json.details).toMatch(/^ipam\.dataDir: ".*regular-file.*" is not a directory/);
    expect(readdirSync(dir)).toEqual(['regular-file']);
  });
});
