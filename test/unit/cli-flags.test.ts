import { describe, expect, it } from 'vitest';
import { parseLongFlags } from '../../lib/cli/flags.ts';

const usage = (m: string): Error => new Error(`usage: ${m}`);
const parse = (argv: string[]) => parseLongFlags(argv, new Set(['conf', 'node']), new Set(['json', 'help']), usage);

describe('the long-option parser of strand agent and strand ipam', () => {
  it('--name value, --name=value, booleans, positionals in order; a repeated option replaces the earlier one', () => {
    const p = parse(['ls', '--conf', 'a.conf', '--json', '--node=n1', 'x', '--node', 'n2']);
    expect([...p.flags]).toEqual([
      ['conf', 'a.conf'],
      ['node', 'n2'],
    ]);
    expect([...p.bools]).toEqual(['json']);
    expect(p.rest).toEqual(['ls', 'x']);
  });
  it('a value may start with dashes or be empty when given with =', () => {
    expect(parse(['--conf', '--json']).flags.get('conf')).toBe('--json');
    expect(parse(['--conf=']).flags.get('conf')).toBe('');
  });
  it('-h is --help only where help is a boolean option', () => {
    expect([...parse(['-h']).bools]).toEqual(['help']);
    expect(parseLongFlags(['-h'], new Set(), new Set(), usage).rest).toEqual(['-h']);
  });
  it('unknown options, a boolean given a value, a value option at the end: the caller’s usage error', () => {
    expect(() => parse(['--bogus'])).toThrow('usage: unknown option --bogus');
    expect(() => parse(['--json=1'])).toThrow('usage: unknown option --json=1');
    expect(() => parse(['--conf'])).toThrow('usage: --conf needs a value');
  });
});
