// A grid's units are independent of each other. Applying them one after the other makes a grid of
// 200 NodeUnits wait on 200 sequential round trips to the apiserver; a few in flight at once
// keeps the apiserver busy without flooding it.
export const UNIT_CONCURRENCY = 8;

/** Runs `fn` over `items` with at most `limit` calls in flight; resolves when all have settled. */
export async function forEachConcurrently<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}
