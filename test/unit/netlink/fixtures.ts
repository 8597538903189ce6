// Loads the captured netlink fixtures (test/fixtures/netlink, made by capture.ts on the
// host kernel and in the qemu guest) and parses them with the codec under test.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseMessages, type RtnlMessage } from '../../../lib/netlink/codec/index.ts';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures', 'netlink');

export type Where = 'host' | 'guest';
export const WHERE: Where[] = ['host', 'guest'];

export interface KernelFixture {
  kernel: string;
  where: Where;
  dumps: Record<'linksA' | 'bridgeA' | 'addrsA' | 'fdbA' | 'linksB' | 'addrsB' | 'routes4B' | 'routes6B' | 'neighsB', string[]>;
  exchanges: Record<'ack' | 'getLink' | 'eexist' | 'enodev' | 'badMtu', { request: string; replies: string[] }>;
  ip: Record<string, any>;
}

export interface RequestFixture {
  kernel: string;
  requests: Record<string, { cmd: string; ok: boolean; sent: string[] }>;
}

export function kernelFixture(where: Where): KernelFixture {
  return JSON.parse(readFileSync(join(dir, `kernel-${where}.json`), 'utf8')) as KernelFixture;
}

export function requestFixture(where: Where): RequestFixture {
  return JSON.parse(readFileSync(join(dir, `ip-requests-${where}.json`), 'utf8')) as RequestFixture;
}

export const hex = (h: string): Buffer => Buffer.from(h, 'hex');

/** Every message of a list of datagrams. */
export function messagesOf(datagrams: string[]): RtnlMessage[] {
  return datagrams.flatMap((d) => parseMessages(hex(d)));
}

export function dataOf<K extends 'link' | 'addr' | 'route' | 'neigh'>(datagrams: string[], kind: K): Array<Extract<RtnlMessage, { kind: K }>> {
  return messagesOf(datagrams).filter((m): m is Extract<RtnlMessage, { kind: K }> => m.kind === kind);
}

/** ifname -> ifindex from `ip -j link` output. */
export function indexByName(ipLinks: Array<{ ifname: string; ifindex: number }>): Map<string, number> {
  return new Map(ipLinks.map((l) => [l.ifname, l.ifindex]));
}
