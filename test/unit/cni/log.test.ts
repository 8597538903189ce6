// Log lines (lib/cni/log.ts): the request context and elapsed time on every text line,
// JSON lines for the agent, levels, errors with their causes.
import { describe, expect, it } from 'vitest';
import { createLogger, phaseTracer } from '../../../lib/cni/log.ts';
import { parseAgentConfig } from '../../../agent/config.ts';

function capture(opts: Partial<Parameters<typeof createLogger>[0]> = {}): { lines: string[]; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  const log = createLogger({ name: 'strand-bridge', stderr: { write: (s) => void lines.push(s) }, ...opts });
  return { lines, log };
}

describe('log lines', () => {
  it('text: time, level, component, context and elapsed time, then the message', () => {
    const { lines, log } = capture({ context: 'ADD 0123abcd/eth0', since: performance.now() - 12.34, level: 'debug' });
    log.debug('veth up');
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z DEBUG strand-bridge ADD 0123abcd\/eth0 \+1\d\.\dms: veth up\n$/);
  });

  it('json: one object per line with the fields, errors with their causes', () => {
    const { lines, log } = capture({ name: 'strand-agent', format: 'json', fields: { node: 'n1' } });
    log.info('synced');
    log.error('reconcile failed', new Error('outer', { cause: new Error('inner') }));
    log.debug('dropped');
    expect(lines).toHaveLength(2);
    const [a, b] = lines.map((l) => JSON.parse(l) as Record<string, string>);
    expect(a).toMatchObject({ level: 'info', component: 'strand-agent', node: 'n1', msg: 'synced' });
    expect(Date.parse(a?.['time'] ?? '')).toBeGreaterThan(0);
    expect(b).toMatchObject({ level: 'error', msg: 'reconcile failed' });
    expect(b?.['error']).toContain('Error: outer');
    expect(b?.['error']).toContain('caused by: Error: inner');
    expect(lines.every((l) => l.endsWith('}\n') && !l.slice(0, -1).includes('\n'))).toBe(true);
  });

  it('the agent takes logFormat text or json', () => {
    const base = { etcd: { endpoints: ['http://127.0.0.1:2379'] } };
    expect(parseAgentConfig(base, {}).logFormat).toBe('text');
    expect(parseAgentConfig({ ...base, logFormat: 'json' }, {}).logFormat).toBe('json');
    expect(() => parseAgentConfig({ ...base, logFormat: 'xml' }, {})).toThrow(/logFormat: must be text or json/);
  });
});

describe('phaseTracer', () => {
  it('logs each phase since the previous mark as one debug line, start first', async () => {
    const { lines, log } = capture({ level: 'debug' });
    const t = phaseTracer(log);
    await new Promise((r) => setTimeout(r, 20));
    t.mark('bridge');
    t.mark('veth');
    t.done('ADD phases (ms)');
    expect(lines).toHaveLength(1);
    const json = JSON.parse(lines[0]!.slice(lines[0]!.indexOf('{'))) as Record<string, { wall: number; cpu: number }>;
    expect(Object.keys(json)).toEqual(['start', 'bridge', 'veth']);
    expect(json['bridge']!.wall).toBeGreaterThanOrEqual(15);
    for (const p of Object.values(json)) expect(p.cpu).toBeGreaterThanOrEqual(0);
  });

  it('writes nothing below debug', () => {
    const { lines, log } = capture({ level: 'info' });
    const t = phaseTracer(log);
    t.mark('x');
    t.done('ADD phases (ms)');
    expect(lines).toEqual([]);
  });
});
