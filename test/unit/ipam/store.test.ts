import { describe, expect, it } from 'vitest';
import { applyOps, emptyDoc } from '../../../ipam/store/doc.ts';
import { etcdKeys } from '../../../ipam/store/etcd.ts';
import { httpTarget } from '../../../ipam/store/etcd-kv.ts';
import { blockFromSegment, blockSegment } from '../../../ipam/store/types.ts';
import type { Block } from '../../../ipam/store/types.ts';

const block = (cidr: string, node = 'n1'): Block => ({ network: 'net', cidr, node, allocations: {} });

describe('store building blocks', () => {
  it('etcd key layout: affinity, blocks and attachments under the prefix; directory forms end in /', () => {
    const k = etcdKeys('/strand/ipam');
    expect(k.affinity('net', '10.1.0.64/26')).toBe('/strand/ipam/affinity/net/10.1.0.64-26');
    expect(k.block('net', 'fd00::40/122')).toBe('/strand/ipam/blocks/net/fd00::40-122');
    expect(k.attachment('net', 'abc', 'eth0')).toBe('/strand/ipam/attachments/net/abc/eth0');
    expect(k.affinity()).toBe('/strand/ipam/affinity/');
    expect(k.affinity('net')).toBe('/strand/ipam/affinity/net/');
    expect(k.attachment('net')).toBe('/strand/ipam/attachments/net/');
    expect(blockFromSegment(blockSegment('fd00::40/122'))).toBe('fd00::40/122');
  });

  it('commits are all-or-nothing compare-and-swap: create-if-absent, exact revision, one new revision', () => {
    const doc = emptyDoc('net');
    expect(applyOps(doc, [{ op: 'putBlock', block: block('10.0.0.0/26'), prevRev: 0 }])).toBe(1);
    // a second create of the same block fails, and nothing of the commit is applied
    expect(
      applyOps(doc, [
        { op: 'putBlock', block: block('10.0.0.64/26'), prevRev: 0 },
        { op: 'putBlock', block: block('10.0.0.0/26', 'n2'), prevRev: 0 },
      ]),
    ).toBeUndefined();
    expect(Object.keys(doc.blocks)).toEqual(['10.0.0.0/26']);
    expect(applyOps(doc, [{ op: 'putBlock', block: block('10.0.0.0/26', 'n1'), prevRev: 7 }])).toBeUndefined();
    expect(applyOps(doc, [{ op: 'delBlock', network: 'net', cidr: '10.0.0.0/26', prevRev: 1 }])).toBe(2);
    expect(doc.blocks).toEqual({});
  });

  it('etcd HTTP targets: host:port takes its scheme from TLS, IPv6 brackets dropped, gRPC unix targets are socket paths', () => {
    expect(httpTarget('127.0.0.1:2379', false)).toEqual({ secure: false, label: '127.0.0.1:2379', host: '127.0.0.1', port: 2379 });
    expect(httpTarget('127.0.0.1:2379', true)).toMatchObject({ secure: true, port: 2379 });
    expect(httpTarget('https://etcd-0.etcd', false)).toMatchObject({ secure: true, host: 'etcd-0.etcd', port: 443 });
    expect(httpTarget('http://[::1]:2379/', true)).toMatchObject({ secure: false, host: '::1', port: 2379 });
    expect(httpTarget('unix:/run/etcd/etcd.sock', false)).toMatchObject({ secure: false, socketPath: '/run/etcd/etcd.sock' });
    expect(httpTarget('unix:///run/etcd.sock', false)).toMatchObject({ socketPath: '/run/etcd.sock' });
    expect(httpTarget('unix:etcd:2379', false)).toMatchObject({ socketPath: 'etcd:2379' });
    expect(httpTarget('unixs:/run/etcd.sock', false)).toMatchObject({ secure: true, socketPath: '/run/etcd.sock' });
  });
});
