// The MAC rule (lib/addr/mac.ts): syntax as Go's net.ParseMAC takes six bytes, the
// canonical form, and what an interface may carry.
import { describe, expect, it } from 'vitest';
import { canonicalMac, isMac, macProblem } from '../../../lib/addr/mac.ts';

describe('isMac', () => {
  it.each(['0a:58:0a:01:00:05', '0A:58:0A:01:00:05', '02-00-00-00-00-01', 'ff:ff:ff:ff:ff:ff'])('%s: a MAC', (m) => expect(isMac(m)).toBe(true));
  it.each([
    ['', 'empty'],
    ['0a:58:0a:01:00', 'five bytes'],
    ['0a:58:0a:01:00:05:06', 'seven bytes'],
    ['0a:58-0a:01:00:05', 'mixed separators'],
    ['0a.58.0a.01.00.05', 'dots'],
    ['0a5.80a:01:00:05', 'misplaced separator'],
    ['a:58:0a:01:00:05', 'one hex digit'],
    ['zz:58:0a:01:00:05', 'not hex'],
    [' 0a:58:0a:01:00:05', 'leading space'],
    ['0a:58:0a:01:00:05\n', 'trailing newline'],
  ])('%s: not a MAC (%s)', (m) => expect(isMac(m)).toBe(false));
});

describe('canonicalMac', () => {
  it('is lower case with ":"', () => {
    expect(canonicalMac('0A-58-0A-01-00-FF')).toBe('0a:58:0a:01:00:ff');
    expect(canonicalMac('0a:58:0a:01:00:05')).toBe('0a:58:0a:01:00:05');
  });
});

describe('macProblem', () => {
  it.each(['0a:58:0a:01:00:05', '02-00-00-00-00-01', 'FE:FF:FF:FF:FF:FF'])('unicast %s: accepted', (m) => expect(macProblem(m)).toBeUndefined());
  it.each([
    ['01:00:5e:00:00:01', /multicast/],
    ['33:33:00:00:00:01', /multicast/],
    ['ff:ff:ff:ff:ff:ff', /multicast/],
    ['00:00:00:00:00:00', /all-zero/],
    ['0a:58:0a:01:00', /not a MAC/],
    ['0a:58-0a:01:00:05', /not a MAC/],
    ['zz:58:0a:01:00:05', /not a MAC/],
  ])('%s: refused', (m, why) => expect(macProblem(m)).toMatch(why));
});
