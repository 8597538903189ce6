// struct ndmsg + NDA_* attributes: neighbours (ARP/NDP entries) and, with the bridge
// family, forwarding database entries (e.g. a vxlan device's remote VTEPs). Pure, no I/O.

import { attrBe16, attrIp, attrU16, attrU32, be16, bytesToIp, bytesToMac, CodecError, formatAttr, macToBytes, parseAttrs, u16, u32 } from './attr.ts';
import * as K from './constants.ts';

/** Neighbour family: IPv4, IPv6, or the bridge forwarding database. */
export type NeighFamily = 4 | 6 | 'bridge';

/** Neighbour states by meaning (ndm_state bits). */
export const NeighState = {
  none: 0,
  incomplete: K.NUD_INCOMPLETE,
  reachable: K.NUD_REACHABLE,
  stale: K.NUD_STALE,
  delay: K.NUD_DELAY,
  probe: K.NUD_PROBE,
  failed: K.NUD_FAILED,
  noarp: K.NUD_NOARP,
  permanent: K.NUD_PERMANENT,
} as const;
/** Neighbour flags by meaning (ndm_flags bits). */
export const NeighFlag = {
  use: K.NTF_USE,
  self: K.NTF_SELF,
  master: K.NTF_MASTER,
  proxy: K.NTF_PROXY,
  extLearned: K.NTF_EXT_LEARNED,
  router: K.NTF_ROUTER,
} as const;

export interface NeighMessage {
  /** undefined (all) only in dump requests. */
  family?: NeighFamily;
  index?: number;
  /** NeighState bits. */
  state?: number;
  /** NeighFlag bits. */
  flags?: number;
  type?: number;
  /** IP address of the neighbour; for FDB entries of a vxlan device, the remote VTEP. */
  dst?: string;
  lladdr?: string;
  vlan?: number;
  port?: number;
  vni?: number;
  ifindex?: number;
  master?: number;
  probes?: number;
}

function familyByte(f: NeighFamily | undefined): number {
  return f === 4 ? K.AF_INET : f === 6 ? K.AF_INET6 : f === 'bridge' ? K.AF_BRIDGE : K.AF_UNSPEC;
}
function familyOfByte(b: number): NeighFamily {
  if (b === K.AF_INET) return 4;
  if (b === K.AF_INET6) return 6;
  if (b === K.AF_BRIDGE) return 'bridge';
  throw new CodecError(`neighbour family ${b} unknown`);
}

export function parseNeighMessage(buf: Buffer): { value: NeighMessage; consumed: number } {
  if (buf.length < K.NDMSG_LEN) throw new CodecError(`ndmsg truncated (${buf.length} bytes)`);
  const m: NeighMessage = {
    family: familyOfByte(buf.readUInt8(0)),
    index: buf.readInt32LE(4),
    state: buf.readUInt16LE(8),
    flags: buf.readUInt8(10),
    type: buf.readUInt8(11),
  };
  for (const a of parseAttrs(buf.subarray(K.NDMSG_LEN))) {
    const v = a.value;
    switch (a.type) {
      case K.NDA_DST:
        m.dst = bytesToIp(v);
        break;
      case K.NDA_LLADDR:
        m.lladdr = bytesToMac(v);
        break;
      case K.NDA_VLAN:
        m.vlan = u16(v);
        break;
      case K.NDA_PORT:
        m.port = be16(v);
        break;
      case K.NDA_VNI:
        m.vni = u32(v);
        break;
      case K.NDA_IFINDEX:
        m.ifindex = u32(v);
        break;
      case K.NDA_MASTER:
        m.master = u32(v);
        break;
      case K.NDA_PROBES:
        m.probes = u32(v);
        break;
    }
  }
  return { value: m, consumed: buf.length };
}

export function formatNeighMessage(m: NeighMessage): Buffer {
  const head = Buffer.alloc(K.NDMSG_LEN);
  head.writeUInt8(familyByte(m.family), 0);
  head.writeInt32LE(m.index ?? 0, 4);
  head.writeUInt16LE(m.state ?? 0, 8);
  head.writeUInt8(m.flags ?? 0, 10);
  head.writeUInt8(m.type ?? 0, 11);
  const out: Buffer[] = [head];
  if (m.dst !== undefined) {
    const v6 = m.dst.includes(':');
    if ((m.family === 4 && v6) || (m.family === 6 && !v6)) throw new CodecError(`neighbour address "${m.dst}" does not match family IPv${m.family}`);
    out.push(attrIp(K.NDA_DST, m.dst, v6 ? 6 : 4));
  }
  if (m.lladdr !== undefined) out.push(formatAttr(K.NDA_LLADDR, macToBytes(m.lladdr)));
  if (m.probes !== undefined) out.push(attrU32(K.NDA_PROBES, m.probes));
  if (m.vlan !== undefined) out.push(attrU16(K.NDA_VLAN, m.vlan));
  if (m.port !== undefined) out.push(attrBe16(K.NDA_PORT, m.port));
  if (m.vni !== undefined) out.push(attrU32(K.NDA_VNI, m.vni));
  if (m.ifindex !== undefined) out.push(attrU32(K.NDA_IFINDEX, m.ifindex));
  if (m.master !== undefined) out.push(attrU32(K.NDA_MASTER, m.master));
  return Buffer.concat(out);
}
