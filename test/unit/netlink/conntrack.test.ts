// ctnetlink codec against entries captured from this kernel (test/fixtures/netlink/
// conntrack-host.json): dump replies parse to the tuples /proc/net/nf_conntrack showed,
// and the requests have the layout conntrack(8) sends.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type CtEntry, formatCtDelete, formatCtDump, parseAttrs, parseCtEntry, splitMessages } from '../../../lib/netlink/codec/index.ts';
import { repoRoot } from '../../helpers/run-plugin.ts';

interface Captured {
  header: { len: number; type: number; flags: number };
  payload: string;
  entry: CtEntry;
}

const fixture = JSON.parse(readFileSync(join(repoRoot, 'test/fixtures/netlink/conntrack-host.json'), 'utf8')) as { messages: Captured[] };
const raw = (c: Captured) => ({ header: { ...c.header, seq: 1, pid: 0 }, payload: Buffer.from(c.payload, 'hex') });

describe('ctnetlink codec', () => {
  it.each(fixture.messages.map((m) => [m.entry.version, m] as const))('parses a captured IPv%s entry: both tuples, protocol, ports, id, mark', (_v, m) => {
    expect(raw(m).payload.length + 16).toBe(m.header.len);
    expect(parseCtEntry(raw(m))).toEqual(m.entry);
  });

  it('ignores messages that are not conntrack entries', () => {
    expect(parseCtEntry({ header: { len: 20, type: 3, flags: 2, seq: 1, pid: 0 }, payload: Buffer.alloc(4) })).toBeUndefined();
  });

  it('refuses a truncated or inconsistent entry', () => {
    const m = fixture.messages[0]!;
    expect(() => parseCtEntry({ ...raw(m), payload: Buffer.alloc(2) })).toThrow(/truncated/);
    // an IPv4 entry labelled IPv6
    const p = Buffer.from(m.payload, 'hex');
    p[0] = 10;
    expect(() => parseCtEntry({ ...raw(m), payload: p })).toThrow(/not IPv6/);
  });

  it('a dump request: CTNETLINK GET, NLM_F_REQUEST|NLM_F_DUMP, nfgenmsg of the family', () => {
    const [msg] = splitMessages(formatCtDump(6, 7));
    expect(msg!.header).toMatchObject({ type: (1 << 8) | 1, flags: 0x1 | 0x300, seq: 7 });
    expect([...msg!.payload]).toEqual([10, 0, 0, 0]);
  });

  it('a delete request carries the original tuple, id and zone; parsing its tuple gives the entry back', () => {
    for (const m of fixture.messages) {
      const e: CtEntry = { ...m.entry, zone: 3 };
      const [msg] = splitMessages(formatCtDelete(e, 9));
      expect(msg!.header).toMatchObject({ type: (1 << 8) | 2, flags: 0x1 | 0x4, seq: 9 });
      const attrs = parseAttrs(msg!.payload.subarray(4));
      expect(attrs.map((a) => a.type)).toEqual([1, 12, 18]);
      // the same bytes as the kernel's own CTA_TUPLE_ORIG of that entry
      const kernelOrig = parseAttrs(Buffer.from(m.payload, 'hex').subarray(4)).find((a) => a.type === 1)!;
      expect(attrs[0]!.value.equals(kernelOrig.value)).toBe(true);
      expect(attrs[1]!.value.readUInt32BE(0)).toBe(m.entry.id);
      expect(attrs[2]!.value.readUInt16BE(0)).toBe(3);
      const back = parseCtEntry({ header: { ...msg!.header, type: 1 << 8 }, payload: msg!.payload });
      expect(back).toEqual({ version: e.version, orig: e.orig, id: e.id, zone: 3 });
    }
  });

  it('refuses a tuple whose address is of the other family', () => {
    const e = fixture.messages[0]!.entry;
    expect(() => formatCtDelete({ ...e, version: 6 }, 1)).toThrow(/not IPv6/);
  });
});
