// Liveness of the work loops of a long-lived process. A process whose event loop is stuck
// cannot answer /healthz at all (the probe times out, which the kubelet counts as a
// failure); a loop that waits forever on something (a netlink answer, a lock) while the
// event loop runs is what these checks find.

/** A liveness check: undefined when fine, else what is wrong. */
export interface LivenessCheck {
  readonly name: string;
  problem(now: number): string | undefined;
}

/**
 * A loop that must keep completing passes: a pass running longer than `maxPassMs`, or
 * (once a pass has completed) no pass starting for `maxIdleMs`, makes it stuck.
 */
export class LoopWatch implements LivenessCheck {
  readonly name: string;
  private readonly maxPassMs: number;
  private readonly maxIdleMs: number | undefined;
  private runningSince: number | undefined;
  private lastDone: number | undefined;
  private lastStart: number | undefined;

  constructor(name: string, opts: { maxPassMs: number; maxIdleMs?: number }) {
    this.name = name;
    this.maxPassMs = opts.maxPassMs;
    this.maxIdleMs = opts.maxIdleMs;
  }

  begin(now = Date.now()): void {
    this.runningSince = now;
    this.lastStart = now;
  }

  end(now = Date.now()): void {
    this.runningSince = undefined;
    this.lastDone = now;
  }

  problem(now = Date.now()): string | undefined {
    if (this.runningSince !== undefined && now - this.runningSince > this.maxPassMs) {
      return `${this.name}: a pass has been running for ${((now - this.runningSince) / 1000).toFixed(1)} s (limit ${this.maxPassMs / 1000} s)`;
    }
    if (this.maxIdleMs !== undefined && this.lastDone !== undefined && this.runningSince === undefined) {
      const idle = now - (this.lastStart ?? this.lastDone);
      if (idle > this.maxIdleMs) return `${this.name}: no pass for ${(idle / 1000).toFixed(1)} s (limit ${this.maxIdleMs / 1000} s)`;
    }
    return undefined;
  }
}
