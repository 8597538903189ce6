// The pod MTU of a node: `strand agent` works it out (vxlan mode: the tunnel's, the
// uplink's MTU minus the encapsulation; host-gw: the uplink's) and writes it, a decimal
// number and a newline, to a node-local file (default /run/strand/pod-mtu). A plugin
// whose config names that file (`mtuFile`) and sets no `mtu` gives pods that MTU; an
// explicit `mtu` always wins. A missing file means the agent has not run yet on this
// node: ADD then fails with code 11 (try again later) before changing anything, so no
// pod ever gets an MTU that does not fit the network; the runtime retries.
import { readFileSync } from 'node:fs';
import { CniError, Code } from '../cni/errors.ts';

export const DEFAULT_POD_MTU_FILE = '/run/strand/pod-mtu';
/** The smallest MTU an IPv4 link may have (RFC 791); IPv6 needs 1280. */
const MIN_MTU = 68;
const MAX_MTU = 65535;

/** The MTU in a pod MTU file's text, or undefined when it is not one. */
export function parsePodMtu(text: string): number | undefined {
  const m = /^\s*(\d{1,5})\s*$/.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]);
  return n >= MIN_MTU && n <= MAX_MTU ? n : undefined;
}

/** The text of a pod MTU file. */
export function formatPodMtu(mtu: number): string {
  return `${mtu}\n`;
}

/**
 * The MTU in `file` (a plugin's `mtuFile`). Missing or unreadable is CniError 11 (the
 * agent has not written it yet); a file that holds no MTU is CniError 7 naming the field.
 */
export function readPodMtu(file: string, field = 'mtuFile'): number {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new CniError(
      Code.TryAgainLater,
      'the pod MTU of this node is not known yet',
      `${field}: cannot read ${file} (${code}); strand agent writes it when it starts (or set "mtu" in the config)`,
      { cause: e },
    );
  }
  const mtu = parsePodMtu(text);
  if (mtu === undefined) {
    throw new CniError(Code.InvalidNetworkConfig, `invalid config field ${field}`, `${field}: ${file} holds no MTU (${MIN_MTU}-${MAX_MTU})`);
  }
  return mtu;
}
