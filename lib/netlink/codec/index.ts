// rtnetlink codec entry point: requests by meaning (kind + action + flags) to bytes, and
// datagrams to messages tagged by `kind`. Pure, no I/O. The only place that maps
// message kinds to RTM_* numbers.

import { CodecError } from './attr.ts';
import { type AddrMessage, formatAddrMessage, parseAddrMessage } from './addr.ts';
import * as K from './constants.ts';
import { formatLinkMessage, type LinkMessage, parseLinkMessage } from './link.ts';
import {
  type ExtAck,
  formatMessage,
  isDumpInterrupted,
  type NlHeader,
  parseDonePayload,
  parseErrorPayload,
  type RawMessage,
  type RequestFlags,
  requestFlagBits,
  splitMessages,
} from './message.ts';
import { formatNeighMessage, type NeighMessage, parseNeighMessage } from './neigh.ts';
import { formatRouteMessage, parseRouteMessage, type RouteMessage } from './route.ts';

export type Action = 'new' | 'del' | 'get' | 'set';

export type RtnlBody =
  | { kind: 'link'; link: LinkMessage }
  | { kind: 'addr'; addr: AddrMessage }
  | { kind: 'route'; route: RouteMessage }
  | { kind: 'neigh'; neigh: NeighMessage };
export type RtnlKind = RtnlBody['kind'];

export type RtnlRequest = RtnlBody & { action: Action };

export type RtnlMessage =
  | (RtnlBody & { action: Action; header: NlHeader })
  | { kind: 'ack'; header: NlHeader; request: NlHeader }
  | { kind: 'error'; header: NlHeader; errno: number; request: NlHeader; extAck?: ExtAck }
  | { kind: 'done'; header: NlHeader; errno: number }
  | { kind: 'other'; header: NlHeader; payload: Buffer };

const TYPES: Record<RtnlKind, Partial<Record<Action, number>>> = {
  link: { new: K.RTM_NEWLINK, del: K.RTM_DELLINK, get: K.RTM_GETLINK, set: K.RTM_SETLINK },
  addr: { new: K.RTM_NEWADDR, del: K.RTM_DELADDR, get: K.RTM_GETADDR },
  route: { new: K.RTM_NEWROUTE, del: K.RTM_DELROUTE, get: K.RTM_GETROUTE },
  neigh: { new: K.RTM_NEWNEIGH, del: K.RTM_DELNEIGH, get: K.RTM_GETNEIGH },
};
const BY_TYPE = new Map<number, [RtnlKind, Action]>();
for (const [kind, actions] of Object.entries(TYPES) as Array<[RtnlKind, Partial<Record<Action, number>>]>) {
  for (const [action, type] of Object.entries(actions) as Array<[Action, number]>) BY_TYPE.set(type, [kind, action]);
}

function messageType(kind: RtnlKind, action: Action): number {
  const t = TYPES[kind][action];
  if (t === undefined) throw new CodecError(`no ${action} message for ${kind}`);
  return t;
}

export function formatBody(b: RtnlBody): Buffer {
  switch (b.kind) {
    case 'link':
      return formatLinkMessage(b.link);
    case 'addr':
      return formatAddrMessage(b.addr);
    case 'route':
      return formatRouteMessage(b.route);
    case 'neigh':
      return formatNeighMessage(b.neigh);
  }
}

/** A complete request datagram. */
export function formatRequest(req: RtnlRequest, flags: RequestFlags, seq: number, pid = 0): Buffer {
  return formatMessage({ type: messageType(req.kind, req.action), flags: requestFlagBits(flags), seq, pid }, formatBody(req));
}

export function parseMessage(raw: RawMessage): RtnlMessage {
  const { header, payload } = raw;
  if (header.type === K.NLMSG_ERROR) {
    const e = parseErrorPayload(header, payload);
    if (e.errno === 0) return { kind: 'ack', header, request: e.request };
    const out: RtnlMessage = { kind: 'error', header, errno: e.errno, request: e.request };
    if (e.extAck) out.extAck = e.extAck;
    return out;
  }
  if (header.type === K.NLMSG_DONE) return { kind: 'done', header, errno: parseDonePayload(payload) };
  const ka = BY_TYPE.get(header.type);
  if (!ka) return { kind: 'other', header, payload };
  const [kind, action] = ka;
  switch (kind) {
    case 'link':
      return { kind, action, header, link: parseLinkMessage(payload).value };
    case 'addr':
      return { kind, action, header, addr: parseAddrMessage(payload).value };
    case 'route':
      return { kind, action, header, route: parseRouteMessage(payload).value };
    case 'neigh':
      return { kind, action, header, neigh: parseNeighMessage(payload).value };
  }
}

/** All messages of one datagram. */
export function parseMessages(buf: Buffer): RtnlMessage[] {
  return splitMessages(buf).map(parseMessage);
}

export { isDumpInterrupted, splitMessages };
export type { ExtAck, NlHeader, RawMessage, RequestFlags };
export { NETLINK_ROUTE } from './constants.ts';
export * from './attr.ts';
export * from './link.ts';
export * from './addr.ts';
export * from './route.ts';
export * from './neigh.ts';
export { formatMessage, parseHeader, parseErrorPayload, formatErrorPayload, parseDonePayload, isError, isDone } from './message.ts';
export * from './conntrack.ts';
export * from './devconf.ts';
