/**
 * Pollers parked until new durable records arrive or their wait runs out; both log adapters use it
 * so `poll()` wakes at once on an append instead of busy-polling.
 */
export class Waiters {
  private readonly parked = new Set<() => void>();

  /** Resolves on the next `wakeAll()` or after `ms`, whichever comes first. */
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.parked.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.parked.add(done);
    });
  }

  wakeAll(): void {
    for (const w of [...this.parked]) w();
  }
}
