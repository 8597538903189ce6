// The long-option parser of strand's hand-rolled subcommands (`strand agent`, `strand
// ipam`): `--name value`, `--name=value`, boolean `--name`, and positional arguments.
// node:util parseArgs serves the others; these two keep it because their option sets are
// tables (the agent's FLAGS, the IPAM CLI's value and boolean sets) and a repeated
// value option replaces the earlier one, as their docs say.

export interface ParsedFlags {
  flags: Map<string, string>;
  bools: Set<string>;
  rest: string[];
}

/**
 * Parses `argv`; `-h` is `--help` when `help` is among `bools`. An unknown option or a
 * value option without a value is `usage(message)`, thrown.
 */
export function parseLongFlags(
  argv: readonly string[],
  values: ReadonlySet<string>,
  bools: ReadonlySet<string>,
  usage: (message: string) => Error,
): ParsedFlags {
  const out: ParsedFlags = { flags: new Map(), bools: new Set(), rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '-h' && bools.has('help')) {
      out.bools.add('help');
      continue;
    }
    if (!a.startsWith('--')) {
      out.rest.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq === -1 ? undefined : eq);
    if (bools.has(name) && eq === -1) {
      out.bools.add(name);
      continue;
    }
    if (!values.has(name)) throw usage(`unknown option ${a}`);
    const v = eq === -1 ? argv[++i] : a.slice(eq + 1);
    if (v === undefined) throw usage(`${a} needs a value`);
    out.flags.set(name, v);
  }
  return out;
}
