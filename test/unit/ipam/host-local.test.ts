// Reading the reference host-local's reservation files: both file formats, cursors,
// files that cannot be used (never quoted), and the move into the store.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hostLocalFilesOf, readHostLocal, removeHostLocal } from '../../../ipam/host-local.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ia-hlu-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('host-local reservation files', () => {
  it('nothing to do: no directory, or no file named by an address', () => {
    expect(readHostLocal(join(dir, 'none'))).toBeUndefined();
    writeFileSync(join(dir, 'lock'), '');
    writeFileSync(join(dir, 'strand-ipam.json'), '{}');
    expect(readHostLocal(dir)).toBeUndefined();
  });

  it('groups addresses by container and ifname; the pre-0.8 format (ID only) is eth0; cursors; bad files skipped unquoted', () => {
    writeFileSync(join(dir, '10.1.0.2'), 'ctr-a\r\neth0');
    writeFileSync(join(dir, 'fd00::2'), 'ctr-a\r\neth0');
    writeFileSync(join(dir, '10.1.0.3'), 'ctr-b\r\nnet1');
    writeFileSync(join(dir, '10.1.0.4'), 'ctr-old');
    writeFileSync(join(dir, '10.1.0.5'), 'TOPSECRET with spaces\r\neth0');
    writeFileSync(join(dir, 'elsewhere'), 'x');
    symlinkSync(join(dir, 'elsewhere'), join(dir, '10.1.0.6'));
    mkdirSync(join(dir, '10.1.0.7'));
    writeFileSync(join(dir, 'last_reserved_ip.0'), '10.1.0.5');
    writeFileSync(join(dir, 'last_reserved_ip.1'), 'fd00::2');
    writeFileSync(join(dir, 'lock'), '');
    const hl = readHostLocal(dir);
    expect(hl?.entries).toEqual([
      { containerId: 'ctr-a', ifname: 'eth0', ips: ['10.1.0.2', 'fd00::2'] },
      { containerId: 'ctr-b', ifname: 'net1', ips: ['10.1.0.3'] },
      { containerId: 'ctr-old', ifname: 'eth0', ips: ['10.1.0.4'] },
    ]);
    expect(hl?.cursors).toEqual(['10.1.0.5', 'fd00::2']);
    expect(hl?.skipped.join('\n')).toMatch(/10\.1\.0\.5: does not hold a container ID/);
    expect(hl?.skipped.join('\n')).toMatch(/10\.1\.0\.6: the host-local file is a symbolic link/);
    expect(hl?.skipped.join('\n')).toMatch(/10\.1\.0\.7: the host-local file is not a regular file/);
    expect(hl?.skipped.join('\n')).not.toContain('TOPSECRET');
    expect(hostLocalFilesOf(hl!, 'ctr-a', 'eth0')).toEqual(['10.1.0.2', 'fd00::2']);

    // moved: the cursors go with the last reservation file
    removeHostLocal(hl!, ['10.1.0.2', 'fd00::2', '10.1.0.3', '10.1.0.4']);
    expect(readdirSync(dir).sort()).toContain('last_reserved_ip.0');
    rmSync(join(dir, '10.1.0.5'));
    rmSync(join(dir, '10.1.0.6'));
    rmSync(join(dir, '10.1.0.7'), { recursive: true });
    removeHostLocal(hl!, []);
    expect(readdirSync(dir).sort()).toEqual(['elsewhere', 'lock']);
  });
});
