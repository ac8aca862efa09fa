// What this controller wrote that its caches have not shown yet. A sync right after a write
// (our own write's watch event queues the grid again) must see the written version, not the
// cache's older one, or it would write the same thing again. An entry ends when the cache
// delivers that resourceVersion, or after a while (a relist may never deliver it).

const TRUST_MS = 30_000;

export class RecentWrites<T> {
  private readonly entries = new Map<string, { resourceVersion: string; value: T; at: number }>();

  put(key: string, resourceVersion: string | undefined, value: T): void {
    if (resourceVersion) this.entries.set(key, { resourceVersion, value, at: Date.now() });
  }

  /** The value written under `key`, while the cache has not caught up with it. */
  get(key: string): T | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (Date.now() - e.at < TRUST_MS) return e.value;
    this.entries.delete(key);
    return undefined;
  }

  /** The cache delivered `resourceVersion` of `key` (or deleted it: pass undefined): the cache is the truth again. */
  seen(key: string, resourceVersion: string | undefined): void {
    const e = this.entries.get(key);
    if (e && (resourceVersion === undefined || e.resourceVersion === resourceVersion)) this.entries.delete(key);
  }
}
