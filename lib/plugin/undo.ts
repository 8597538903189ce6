// The rollback stack every ADD uses: push an undo step right after each side effect;
// on failure `unwind()` runs the steps last-in-first-out, logs (never throws) undo
// failures, and the caller rethrows the original error. `commit()` at the very end
// forgets the steps. Cleanup is never decided from a captured error variable.
//
//   const undo = new UndoStack(log);
//   try {
//     await createThing();  undo.push('delete thing', () => deleteThing());
//     ...
//     undo.commit();
//   } catch (e) { await undo.unwind(); throw e; }
//
// or simply `return undo.run(async (u) => { ... })`.

export type UndoStep = () => void | Promise<void>;

export type UndoLog = (msg: string) => void;

export class UndoStack {
  private steps: Array<{ what: string; fn: UndoStep }> = [];
  private readonly log: UndoLog;

  /** `log` receives undo failures: the request's logger (no process-wide default: a daemon runs many requests). */
  constructor(log: UndoLog) {
    this.log = log;
  }

  push(what: string, fn: UndoStep): void {
    this.steps.push({ what, fn });
  }

  get size(): number {
    return this.steps.length;
  }

  /** Success: nothing will be undone. */
  commit(): void {
    this.steps = [];
  }

  /** Runs every pushed step, newest first; a failing step is logged and the rest still run. */
  async unwind(): Promise<void> {
    const steps = this.steps;
    this.steps = [];
    for (let i = steps.length - 1; i >= 0; i--) {
      const s = steps[i]!;
      try {
        await s.fn();
      } catch (e) {
        this.log(`undo "${s.what}" failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }

  /** Runs `body`; commits when it returns, unwinds and rethrows the original error when it throws. */
  async run<T>(body: (u: UndoStack) => Promise<T>): Promise<T> {
    try {
      const out = await body(this);
      this.commit();
      return out;
    } catch (e) {
      await this.unwind();
      throw e;
    }
  }
}
