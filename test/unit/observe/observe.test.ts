// lib/observe: the metrics' recording API (through skel's RequestObserver, as the daemon
// will use it), the listen address syntax, the loop watch behind /healthz, the server's
// routes.
import { describe, expect, it } from 'vitest';
import { CniError, Code } from '../../../lib/cni/errors.ts';
import { createLogger } from '../../../lib/cni/log.ts';
import { pluginMain, type PluginFuncs, type PluginIO } from '../../../lib/cni/skel.ts';
import type { NetConf } from '../../../lib/cni/types.ts';
import { LoopWatch } from '../../../lib/observe/health.ts';
import { StrandMetrics } from '../../../lib/observe/metrics.ts';
import { parseListenAddress, startObserveServer } from '../../../lib/observe/server.ts';
import { freePort } from '../../helpers/etcd.ts';

const quiet = createLogger({ name: 't', stderr: { write: () => undefined }, level: 'error' });

function io(env: Record<string, string>, stdin: string, observer: StrandMetrics): PluginIO {
  return { env, stdin: async () => Buffer.from(stdin), stdout: { write: () => undefined }, stderr: { write: () => undefined }, observer };
}

const ENV = { CNI_CONTAINERID: 'c1', CNI_NETNS: '/var/run/netns/nope', CNI_IFNAME: 'eth0', CNI_PATH: '/bin' };
const CONF = JSON.stringify({ cniVersion: '1.1.0', name: 'net1', type: 'strand-test' });

describe('StrandMetrics as the RequestObserver of pluginMain', () => {
  it('counts each call by plugin, verb and result, with its latency and error code', async () => {
    const m = new StrandMetrics({ defaultMetrics: false });
    const funcs: PluginFuncs<NetConf> = {
      add: async () => ({ cniVersion: '1.1.0' }),
      del: async () => {
        throw new CniError(Code.TryAgainLater, 'store down');
      },
      check: async () => undefined,
      status: async () => undefined,
      gc: async () => undefined,
    };
    const spec = { name: 'strand-test', about: 't', parseConfig: (c: NetConf) => c };
    expect(await pluginMain(funcs, spec, io({ ...ENV, CNI_COMMAND: 'ADD' }, CONF, m))).toBe(0);
    expect(await pluginMain(funcs, spec, io({ ...ENV, CNI_COMMAND: 'ADD' }, CONF, m))).toBe(0);
    expect(await pluginMain(funcs, spec, io({ ...ENV, CNI_COMMAND: 'DEL' }, CONF, m))).toBe(1);
    expect(await pluginMain(funcs, spec, io({ ...ENV, CNI_COMMAND: 'NONSENSE-$(id)' }, CONF, m))).toBe(1);
    m.ipam('net1', 'allocate', true, 2);
    m.ipam('net1', 'release', false, 0);
    const text = await m.text();
    expect(text).toContain('strand_cni_requests_total{plugin="strand-test",verb="ADD",result="success"} 2');
    expect(text).toContain('strand_cni_requests_total{plugin="strand-test",verb="DEL",result="error"} 1');
    expect(text).toContain('strand_cni_request_errors_total{plugin="strand-test",verb="DEL",code="11"} 1');
    // an unknown CNI_COMMAND never becomes a label value
    expect(text).toContain('strand_cni_requests_total{plugin="strand-test",verb="invalid",result="error"} 1');
    expect(text).not.toContain('NONSENSE');
    expect(text).toMatch(/^strand_cni_request_duration_seconds_count\{plugin="strand-test",verb="ADD",result="success"\} 2$/m);
    expect(text).toContain('strand_ipam_operations_total{network="net1",op="allocate",result="success"} 1');
    expect(text).toContain('strand_ipam_addresses_total{network="net1",op="allocate"} 2');
    expect(text).toContain('strand_ipam_operations_total{network="net1",op="release",result="failure"} 1');
    // no process metrics unless asked; each instance has its own registry
    expect(text).not.toContain('process_open_fds');
    expect(await new StrandMetrics({ defaultMetrics: false }).text()).not.toContain('strand-test');
  });

  it('times etcd requests and counts the failed ones', async () => {
    const m = new StrandMetrics({ defaultMetrics: false });
    await m.timeEtcd('range', async () => 1);
    await expect(m.timeEtcd('txn', async () => Promise.reject(new Error('down')))).rejects.toThrow('down');
    const text = await m.text();
    expect(text).toMatch(/^strand_etcd_request_duration_seconds_count\{op="range"\} 1$/m);
    expect(text).toMatch(/^strand_etcd_request_errors_total\{op="txn"\} 1$/m);
  });
});

describe('listen addresses', () => {
  it('takes host:port, [ipv6]:port and :port', () => {
    expect(parseListenAddress('127.0.0.1:9476')).toEqual({ host: '127.0.0.1', port: 9476 });
    expect(parseListenAddress('[::1]:80')).toEqual({ host: '::1', port: 80 });
    expect(parseListenAddress(':9476')).toEqual({ host: '::', port: 9476 });
    for (const bad of ['9476', 'localhost:9476', '1.2.3.4:70000', '::1:80', '1.2.3.4:', '[1.2.3.4]:80x'])
      expect(() => parseListenAddress(bad), bad).toThrow(/invalid listen address/);
  });
});

describe('LoopWatch', () => {
  it('is stuck while a pass runs past its limit, or when passes stop once one completed', () => {
    const w = new LoopWatch('reconcile loop', { maxPassMs: 1000, maxIdleMs: 5000 });
    expect(w.problem(0)).toBeUndefined();
    expect(w.problem(60_000)).toBeUndefined(); // never ran: nothing to say yet
    w.begin(100_000);
    expect(w.problem(100_900)).toBeUndefined();
    expect(w.problem(101_500)).toBe('reconcile loop: a pass has been running for 1.5 s (limit 1 s)');
    w.end(101_600);
    expect(w.problem(105_000)).toBeUndefined();
    expect(w.problem(106_000)).toBe('reconcile loop: no pass for 6.0 s (limit 5 s)');
    w.begin(106_100);
    expect(w.problem(106_200)).toBeUndefined();
  });
});

describe('the observability server', () => {
  it('serves /metrics, /healthz, /readyz; 503 with the reasons; 404 and 405 otherwise', async () => {
    const m = new StrandMetrics({ defaultMetrics: false });
    let problem: string | undefined;
    let notReady: string | undefined = 'not synced';
    const srv = await startObserveServer(
      { host: '127.0.0.1', port: await freePort() },
      { metrics: m, liveness: [{ name: 'x', problem: () => problem }], readiness: () => notReady },
      quiet,
    );
    try {
      const base = `http://127.0.0.1:${srv.address.port}`;
      const get = async (path: string, method = 'GET'): Promise<[number, string]> => {
        const r = await fetch(`${base}${path}`, { method });
        return [r.status, await r.text()];
      };
      expect(await get('/healthz')).toEqual([200, 'ok\n']);
      expect(await get('/readyz')).toEqual([503, 'not ready: not synced\n']);
      notReady = undefined;
      expect(await get('/readyz')).toEqual([200, 'ok\n']);
      problem = 'x: stuck';
      expect(await get('/healthz')).toEqual([503, 'unhealthy: x: stuck\n']);
      const [status, body] = await get('/metrics');
      expect(status).toBe(200);
      expect(body).toContain('# TYPE strand_agent_synced gauge');
      expect((await get('/metrics', 'POST'))[0]).toBe(405);
      expect((await get('/'))[0]).toBe(404);
    } finally {
      await srv.close();
    }
  });
});
