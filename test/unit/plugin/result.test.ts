import { describe, expect, it } from 'vitest';
import { resultDns } from '../../../lib/plugin/result.ts';

describe('the result DNS of the interface plugins (one rule for bridge, macvlan, ipvlan)', () => {
  const ipam = { nameservers: ['10.0.0.10'], search: ['svc'] };
  it("the network config's DNS when it sets any field, even an empty list (the reference bridge's dnsConfSet)", () => {
    expect(resultDns({ nameservers: ['1.1.1.1'] }, ipam)).toEqual({ nameservers: ['1.1.1.1'] });
    expect(resultDns({ nameservers: [] }, ipam)).toEqual({ nameservers: [] });
    expect(resultDns({ search: [] }, ipam)).toEqual({ search: [] });
    expect(resultDns({ options: ['ndots:5'] }, ipam)).toEqual({ options: ['ndots:5'] });
    expect(resultDns({ domain: 'cluster.local' }, ipam)).toEqual({ domain: 'cluster.local' });
  });
  it("the IPAM delegate's DNS when the config sets none (no dns, {}, or only an empty domain)", () => {
    expect(resultDns(undefined, ipam)).toBe(ipam);
    expect(resultDns({}, ipam)).toBe(ipam);
    expect(resultDns({ domain: '' }, ipam)).toBe(ipam);
    expect(resultDns(undefined, undefined)).toBeUndefined();
  });
});
