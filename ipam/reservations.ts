// Store-level reservations: addresses and CIDRs of a network that the allocator never
// hands out (hosts, routers, appliances on the pod subnet), with a note. One record per
// network, changed by compare-and-swap; every allocation compares its revision, so an
// allocation planned before a reservation landed is retried, never committed past it.
// Used by `strand ipam reserve|unreserve` and by any long-lived component (the node agent
// registering its node's address in flat mode): plain functions over a Store.
import { setTimeout as sleep } from 'node:timers/promises';
import { formatCidr, network as networkOf, tryParseCidr, tryParseIP, bitsOf } from '../lib/addr/cidr.ts';
import type { Holder, Reservation, Reservations, Store } from './store/types.ts';

/** An address or CIDR that cannot be reserved (not an address, host bits set). */
export class ReservationError extends Error {
  override readonly name = 'ReservationError';
}

/** "10.1.0.7" -> "10.1.0.7/32"; "10.1.0.0/30" stays; host bits set is an error. */
export function reservationCidr(text: string): string {
  const ip = tryParseIP(text);
  if (ip) return formatCidr({ family: ip.family, ip: ip.value, prefix: bitsOf(ip.family) });
  const c = tryParseCidr(text);
  if (!c) throw new ReservationError(`${JSON.stringify(text.slice(0, 64))} is not an IP address or CIDR`);
  const n = networkOf(c);
  if (n.ip !== c.ip) throw new ReservationError(`${text.slice(0, 64)} has host bits set (the network is ${formatCidr(n)})`);
  return formatCidr(n);
}

export async function listReservations(store: Store, network: string): Promise<Reservation[]> {
  return (await store.getReservations(network))?.value.reservations ?? [];
}

async function update(store: Store, network: string, change: (list: Reservation[]) => Reservation[] | undefined): Promise<boolean> {
  for (let attempt = 0; attempt < 32; attempt++) {
    const cur = await store.getReservations(network);
    const next = change([...(cur?.value.reservations ?? [])]);
    if (!next) return false;
    const value: Reservations = { network, reservations: next };
    if ((await store.commit([{ op: 'putReservations', reservations: value, prevRev: cur?.rev ?? 0 }])) !== undefined) return true;
    await sleep(attempt * 5);
  }
  throw new ReservationError(`the reservations of network ${network} kept changing under this update (32 attempts)`);
}

/**
 * Adds (or replaces the note and flag of) a reservation. Returns whether it changed
 * anything and the attachments already holding addresses inside it: they keep them (the
 * reservation stops new allocations only).
 */
export async function reserve(
  store: Store,
  network: string,
  entry: { cidr: string; note: string; allowRequested?: boolean },
  now: () => Date = () => new Date(),
): Promise<{ changed: boolean; cidr: string; holders: Array<Holder & { ip: string }> }> {
  const cidr = reservationCidr(entry.cidr);
  const rec: Reservation = { cidr, note: entry.note, created: now().toISOString() };
  if (entry.allowRequested) rec.allowRequested = true;
  const changed = await update(store, network, (list) => {
    const i = list.findIndex((r) => r.cidr === cidr);
    if (i >= 0) {
      const old = list[i] as Reservation;
      if (old.note === rec.note && !!old.allowRequested === !!rec.allowRequested) return undefined;
      list[i] = { ...rec, created: old.created };
      return list;
    }
    return [...list, rec].sort((a, b) => a.cidr.localeCompare(b.cidr));
  });
  const holders = [...(await store.holders(network, cidr)).entries()].map(([ip, h]) => ({ ip, ...h }));
  return { changed, cidr, holders };
}

/** Removes the reservation of exactly this address or CIDR; false when there was none. */
export async function unreserve(store: Store, network: string, text: string): Promise<boolean> {
  const cidr = reservationCidr(text);
  return update(store, network, (list) => {
    const next = list.filter((r) => r.cidr !== cidr);
    return next.length === list.length ? undefined : next;
  });
}
