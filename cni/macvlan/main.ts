// PLACEHOLDER until the strand-macvlan plugin lands: VERSION works (skel answers it), every
// other verb answers a CNI error saying the plugin is not built yet.
import { CniError, Code } from '../../lib/cni/errors.ts';
import { pluginMain, type PluginIO } from '../../lib/cni/skel.ts';
import type { NetConf } from '../../lib/cni/types.ts';

const name = 'strand-macvlan';

function notBuilt(): Promise<never> {
  return Promise.reject(new CniError(Code.NotImplemented, `${name} is not built yet`));
}

export function main(io: PluginIO): Promise<number> {
  const funcs = { add: notBuilt, del: notBuilt, check: notBuilt, status: notBuilt, gc: notBuilt };
  return pluginMain(funcs, { name, about: `${name} (placeholder)`, parseConfig: (raw: NetConf) => raw }, io);
}
