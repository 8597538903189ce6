import { expect } from 'vitest';
import type { PluginRun } from '../../helpers/run-plugin.ts';

export const SEVEN_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
export const PLUGINS = ['strand-bridge', 'strand-macvlan', 'strand-ipvlan', 'strand-ipam', 'strand-portmap', 'loopback'] as const;

/** A JavaScript stack frame line ("    at fn (file:1:2)"). */
const STACK_FRAME = /^\s+at .+[:(]/m;

/**
 * The answer is exactly what libcni expects for a failure: exit status 1, stdout is one
 * CNI error object (code, msg, optional details; nothing else on stdout, no stack trace).
 * Returns the error object.
 */
export function expectCniError(r: PluginRun, code: number): { code: number; msg: string; details?: string } {
  const context = `exit ${r.code}, stdout ${JSON.stringify(r.stdout)}, stderr ${JSON.stringify(r.stderr)}`;
  expect(r.signal, context).toBeNull();
  expect(r.code, context).toBe(1);
  expect(r.stdout, context).not.toMatch(STACK_FRAME);
  expect(r.json, `stdout is not one JSON document: ${context}`).toBeTypeOf('object');
  expect(r.json.code, context).toBe(code);
  expect(r.json.msg, context).toBeTypeOf('string');
  expect(r.json.msg.length, context).toBeGreaterThan(0);
  if (r.json.details !== undefined) expect(r.json.details, context).toBeTypeOf('string');
  expect(
    Object.keys(r.json).every((k) => ['cniVersion', 'code', 'msg', 'details'].includes(k)),
    context,
  ).toBe(true);
  return r.json;
}

/** The text a person or a log reads for an error: msg and details together. */
export function errorText(e: { msg: string; details?: string }): string {
  return `${e.msg} ${e.details ?? ''}`;
}
