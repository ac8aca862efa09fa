// A grid's units are independent of each other. Applying them one after the other makes a grid of
// 200 NodeUnits wait on 200 sequential round trips to the apiserver; many in flight at once keep
// the apiserver busy. A controller-wide limit keeps several large grids syncing at the same time
// from flooding it (its default limit of mutating requests in flight is 200).
export const UNIT_CONCURRENCY = 32;
export const CONTROLLER_WRITE_CONCURRENCY = 96;
/**
 * Longest a deferred write waits for object writes to end. Object writes come in bursts (a new
 * unit, a new grid); a stream of them that never pauses must not hold grid statuses and NodeUnit
 * membership back for longer than this.
 */
export const MAX_DEFER_MS = 2_000;

/** Runs `fn` over `items` with at most `limit` calls in flight; resolves when all have settled. */
export async function forEachConcurrently<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}

/**
 * What a write is for. `object`: a grid's rendered object (create, update, delete, or the read
 * that decides one), what a grid's users wait for. `deferred`: everything that reports on or
 * follows from objects (grid statuses, events, NodeUnits and their status), which waits while
 * object writes are queued or in flight.
 */
export type WritePriority = 'object' | 'deferred';

interface Waiter {
  start: () => void;
  since: number;
}

/**
 * At most `limit` calls in flight at once, objects first: a waiting object write is started
 * before a deferred one, and a deferred write starts only when no object write is queued or in
 * flight, or once it has waited `maxDeferMs`: then it takes the next free slot before any object
 * write (a deferred write is held back, never starved).
 * Within a priority, calls start in the order they came. One per process: the apiserver's
 * capacity is shared by every controller in it.
 */
export class WriteLimiter {
  private readonly limit: number;
  private readonly maxDeferMs: number;
  private readonly now: () => number;
  private readonly queued: Record<WritePriority, Waiter[]> = { object: [], deferred: [] };
  private readonly active: Record<WritePriority, number> = { object: 0, deferred: 0 };
  private timer?: NodeJS.Timeout;
  /** The deferred call the timer is armed for. */
  private timerFor?: Waiter;
  /** Callers of `objectsSettled` waiting for the object writes to end. */
  private settledWaiters: (() => void)[] = [];

  constructor(limit: number, opts: { maxDeferMs?: number; now?: () => number } = {}) {
    this.limit = limit;
    this.maxDeferMs = opts.maxDeferMs ?? MAX_DEFER_MS;
    this.now = opts.now ?? Date.now;
  }

  /** Calls in flight and waiting, by priority (for tests and metrics). */
  get counts(): { active: Record<WritePriority, number>; queued: Record<WritePriority, number> } {
    return { active: { ...this.active }, queued: { object: this.queued.object.length, deferred: this.queued.deferred.length } };
  }

  async run<T>(priority: WritePriority, fn: () => Promise<T>): Promise<T> {
    await new Promise<void>((start) => {
      this.queued[priority].push({ start, since: this.now() });
      this.admit();
    });
    try {
      return await fn();
    } finally {
      this.active[priority]--;
      this.admit();
    }
  }

  /**
   * Resolves once no object write is queued or in flight, or after the longest deferral: for work
   * whose writes are all deferred, so that it does not compute ahead of them and take the CPU
   * from the object writes meanwhile.
   */
  objectsSettled(): Promise<void> {
    if (!this.objectsBusy()) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        const i = this.settledWaiters.indexOf(done);
        if (i >= 0) this.settledWaiters.splice(i, 1);
        resolve();
      };
      const timer = setTimeout(done, this.maxDeferMs);
      timer.unref();
      this.settledWaiters.push(done);
    });
  }

  /** Starts what may start now; arms a timer for the oldest deferred call held back by objects. */
  private admit(): void {
    if (this.settledWaiters.length > 0 && !this.objectsBusy()) for (const done of [...this.settledWaiters]) done();
    while (this.active.object + this.active.deferred < this.limit) {
      const priority = this.next();
      if (!priority) break;
      this.active[priority]++;
      this.queued[priority].shift()!.start();
    }
    // Only the oldest deferred call can run out of patience first; the timer follows it.
    const held = this.objectsBusy() ? this.queued.deferred[0] : undefined;
    if (held === this.timerFor) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerFor = held;
    const wait = held ? held.since + this.maxDeferMs - this.now() : 0;
    // Overdue and still waiting: every slot is taken, and the next call to end starts it.
    if (wait <= 0) return;
    this.timer = setTimeout(() => {
      this.timer = this.timerFor = undefined;
      this.admit();
    }, wait);
    this.timer.unref();
  }

  private next(): WritePriority | undefined {
    const held = this.queued.deferred[0];
    // Waited long enough: it takes the next free slot, even before waiting object writes.
    if (held && this.now() - held.since >= this.maxDeferMs) return 'deferred';
    if (this.queued.object.length > 0) return 'object';
    if (held && !this.objectsBusy()) return 'deferred';
    return undefined;
  }

  private objectsBusy(): boolean {
    return this.active.object > 0 || this.queued.object.length > 0;
  }
}
