// Timing one asynchronous request for a metrics callback; no prom-client here, so code
// that may run in a plugin process (the etcd clients) can take such a callback.

/** Told about one request: its operation name, duration and whether it succeeded. */
export type RequestTiming = (op: string, seconds: number, ok: boolean) => void;

/** Runs `fn` as the request `op`, telling `observe` (when given) how long it took and whether it failed. */
export async function timed<T>(observe: RequestTiming | undefined, op: string, fn: () => Promise<T>): Promise<T> {
  if (!observe) return fn();
  const t0 = performance.now();
  try {
    const r = await fn();
    observe(op, (performance.now() - t0) / 1000, true);
    return r;
  } catch (e) {
    observe(op, (performance.now() - t0) / 1000, false);
    throw e;
  }
}
