import { describe, expect, it } from 'vitest';
import { vxlanMtu } from '../../../agent/dataplane.ts';

describe("the VXLAN device's MTU (the pods' MTU in vxlan mode)", () => {
  it('the underlay MTU less 50 over an IPv4 underlay, less 70 over IPv6', () => {
    expect(vxlanMtu(1500, '192.168.1.10')).toBe(1450);
    expect(vxlanMtu(9000, '192.168.1.10')).toBe(8950);
    expect(vxlanMtu(1500, 'fd00::10')).toBe(1430);
    expect(vxlanMtu(9000, '2001:db8::1')).toBe(8930);
  });
  it('an explicit vxlan.mtu wins', () => {
    expect(vxlanMtu(1500, 'fd00::10', 1400)).toBe(1400);
    expect(vxlanMtu(1500, '10.0.0.1', 1480)).toBe(1480);
  });
});
