// The node's pod MTU file (lib/plugin/mtu.ts): what strand-bridge's `mtuFile` reads.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isCniError } from '../../../lib/cni/errors.ts';
import { formatPodMtu, parsePodMtu, readPodMtu } from '../../../lib/plugin/mtu.ts';

const dir = mkdtempSync(join(tmpdir(), 'strand-mtu-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function codeOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (e) {
    return isCniError(e) ? e.code : -1;
  }
  return undefined;
}

describe('pod MTU file', () => {
  it('holds a decimal MTU and a newline', () => {
    expect(formatPodMtu(1450)).toBe('1450\n');
    expect(parsePodMtu('1450\n')).toBe(1450);
    expect(parsePodMtu(' 9000 ')).toBe(9000);
    for (const bad of ['', 'abc', '67', '65536', '1450 1500', '-1', '1e3', '0x5aa']) expect(parsePodMtu(bad), bad).toBeUndefined();
  });

  it('reads the file; missing is code 11 (the agent has not written it yet), garbage is code 7 naming the field', () => {
    const f = join(dir, 'pod-mtu');
    writeFileSync(f, '1450\n');
    expect(readPodMtu(f)).toBe(1450);
    expect(codeOf(() => readPodMtu(join(dir, 'missing')))).toBe(11);
    writeFileSync(f, 'big\n');
    expect(codeOf(() => readPodMtu(f))).toBe(7);
    try {
      readPodMtu(f);
    } catch (e) {
      expect(isCniError(e) && e.details).toContain('mtuFile');
    }
  });
});
