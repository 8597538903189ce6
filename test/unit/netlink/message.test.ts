import { describe, expect, it } from 'vitest';
import {
  formatErrorPayload,
  formatMessage,
  formatRequest,
  isDumpInterrupted,
  parseErrorPayload,
  parseHeader,
  parseMessages,
  splitMessages,
} from '../../../lib/netlink/codec/index.ts';
import { requestFlagBits } from '../../../lib/netlink/codec/message.ts';
import { hex, kernelFixture, messagesOf, WHERE } from './fixtures.ts';

describe('nlmsghdr', () => {
  it('formats and parses a header; length counts header and payload', () => {
    const buf = formatMessage({ type: 18, flags: 0x301, seq: 77, pid: 0 }, Buffer.alloc(16));
    expect(buf.length).toBe(32);
    expect(parseHeader(buf).value).toEqual({ len: 32, type: 18, flags: 0x301, seq: 77, pid: 0 });
  });

  it('pads the message to 4 bytes but keeps the real length', () => {
    const buf = formatMessage({ type: 16, flags: 1, seq: 1, pid: 0 }, Buffer.alloc(5));
    expect(buf.length).toBe(24);
    expect(buf.readUInt32LE(0)).toBe(21);
  });

  it('rejects a length beyond the datagram', () => {
    const buf = formatMessage({ type: 16, flags: 1, seq: 1, pid: 0 }, Buffer.alloc(8));
    buf.writeUInt32LE(64, 0);
    expect(() => parseHeader(buf)).toThrow(/out of range/);
  });

  it('maps request flags by meaning to NLM_F_* bits', () => {
    expect(requestFlagBits({})).toBe(0x1);
    expect(requestFlagBits({ ack: true, create: true, excl: true })).toBe(0x605);
    expect(requestFlagBits({ ack: true, create: true, replace: true })).toBe(0x505);
    expect(requestFlagBits({ ack: true, create: true, append: true })).toBe(0xc05);
    expect(requestFlagBits({ dump: true })).toBe(0x301);
  });
});

describe.each(WHERE)('kernel replies captured on the %s kernel', (where) => {
  const fx = kernelFixture(where);

  it('splits multipart dump datagrams and ends them with NLMSG_DONE', () => {
    for (const [name, datagrams] of Object.entries(fx.dumps)) {
      const msgs = messagesOf(datagrams);
      expect(msgs.length, name).toBeGreaterThan(1);
      const last = msgs[msgs.length - 1]!;
      expect(last.kind, name).toBe('done');
      if (last.kind === 'done') expect(last.errno).toBe(0);
      for (const m of msgs.slice(0, -1)) {
        expect(m.header.flags & 0x2, `${name}: NLM_F_MULTI`).toBe(0x2);
        expect(m.header.seq).toBe(4242);
        expect(isDumpInterrupted(m.header)).toBe(false);
      }
    }
  });

  it('reads an acknowledgement (errno 0) for the request it answers', () => {
    const { request, replies } = fx.exchanges.ack;
    const msgs = messagesOf(replies);
    expect(msgs).toHaveLength(1);
    const ack = msgs[0]!;
    expect(ack.kind).toBe('ack');
    if (ack.kind === 'ack') expect(ack.request).toEqual(parseHeader(hex(request)).value);
  });

  it('reads a get reply followed by the ack of the same sequence', () => {
    const msgs = messagesOf(fx.exchanges.getLink.replies);
    expect(msgs.map((m) => m.kind)).toEqual(['link', 'ack']);
    expect(msgs.every((m) => m.header.seq === 4242)).toBe(true);
  });

  it('reads EEXIST and ENODEV errors with their errno', () => {
    const eexist = messagesOf(fx.exchanges.eexist.replies);
    expect(eexist).toMatchObject([{ kind: 'error', errno: 17 }]);
    const enodev = messagesOf(fx.exchanges.enodev.replies);
    expect(enodev).toMatchObject([{ kind: 'error', errno: 19 }]);
    if (enodev[0]?.kind === 'error') expect(enodev[0].request.type).toBe(18);
  });

  it('reads the extended-ack message the kernel attaches to an error', () => {
    const msgs = messagesOf(fx.exchanges.badMtu.replies);
    expect(msgs).toMatchObject([{ kind: 'error', errno: 22, extAck: { msg: 'mtu less than device minimum' } }]);
  });

  it('detects NLM_F_DUMP_INTR on a dump message', () => {
    const d = hex(fx.dumps.linksB[0]!);
    d.writeUInt16LE(d.readUInt16LE(6) | 0x10, 6);
    const first = splitMessages(d)[0]!;
    expect(isDumpInterrupted(first.header)).toBe(true);
  });
});

describe('error payload', () => {
  it('round-trips errno and request header', () => {
    const request = { len: 40, type: 20, flags: 0x605, seq: 9, pid: 0 };
    const header = { len: 36, type: 2, flags: 0x100, seq: 9, pid: 1 };
    const p = formatErrorPayload({ errno: 17, request });
    expect(parseErrorPayload(header, p)).toEqual({ errno: 17, request });
    const msgs = parseMessages(formatMessage(header, p));
    expect(msgs).toEqual([{ kind: 'error', header, errno: 17, request }]);
  });

  it('refuses a message kind/action the kernel does not have', () => {
    expect(() => formatRequest({ kind: 'addr', action: 'set', addr: {} }, {}, 1)).toThrow(/no set message for addr/);
  });
});
