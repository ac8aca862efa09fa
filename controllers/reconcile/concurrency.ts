// A grid's units are independent of each other. Applying them one after the other makes a grid of
// 200 NodeUnits wait on 200 sequential round trips to the apiserver; many in flight at once keep
// the apiserver busy. A controller-wide limit keeps several large grids syncing at the same time
// from flooding it (its default limit of mutating requests in flight is 200).
export const UNIT_CONCURRENCY = 32;
export const CONTROLLER_WRITE_CONCURRENCY = 96;

/** Runs `fn` over `items` with at most `limit` calls in flight; resolves when all have settled. */
export async function forEachConcurrently<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}

/** At most `limit` calls of `run` in flight at once; the others wait their turn in order. */
export class Semaphore {
  private readonly limit: number;
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(limit: number) {
    this.limit = limit;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}
