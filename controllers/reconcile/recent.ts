// What this controller wrote that its caches have not shown yet. A sync right after a write
// (our own write's watch event queues the grid again) must see the written version, not the
// cache's older one, or it would write the same thing again. The cache is the truth again as
// soon as it holds that version or a later one; an entry also ends after a while, in case the
// cache never delivers that version (a relist can skip it).

const TRUST_MS = 30_000;

/**
 * Whether `cached` is at least as new as `written`. resourceVersions are opaque to clients in
 * general; the apiserver's etcd storage makes them increasing integers, which is all this relies
 * on, and only to choose between two copies of an object this controller wrote.
 */
function caughtUp(cached: string | undefined, written: string): boolean {
  if (cached === undefined) return false;
  if (cached === written) return true;
  if (!/^\d+$/.test(cached) || !/^\d+$/.test(written)) return false;
  return BigInt(cached) >= BigInt(written);
}

export class RecentWrites<T> {
  private readonly entries = new Map<string, { resourceVersion: string; value: T; at: number }>();
  /**
   * Keys with a write in flight → the versions the cache delivered meanwhile. The apiserver
   * often sends the watch event of a write before the write's own answer arrives: only then can
   * such an event be told apart from somebody else's change.
   */
  private readonly writing = new Map<string, { resourceVersion: string | undefined; release: () => void }[]>();

  put(key: string, resourceVersion: string | undefined, value: T): void {
    if (resourceVersion) this.entries.set(key, { resourceVersion, value, at: Date.now() });
  }

  /** The value written under `key`, unless the cache (at `cachedVersion`) has caught up with it. */
  get(key: string, cachedVersion: string | undefined): T | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (Date.now() - e.at < TRUST_MS && !caughtUp(cachedVersion, e.resourceVersion)) return e.value;
    this.entries.delete(key);
    return undefined;
  }

  /** What the object holds now: the value written under `key` until the cache (at `cachedVersion`) shows it, else `cached`. */
  current(key: string, cachedVersion: string | undefined, cached: T): T {
    return this.get(key, cachedVersion) ?? cached;
  }

  /**
   * True when `resourceVersion` is exactly the version this controller wrote under `key` and has
   * not seen come back yet: the watch event carrying it is the echo of our own write.
   */
  isOwnWrite(key: string, resourceVersion: string | undefined): boolean {
    return resourceVersion !== undefined && this.entries.get(key)?.resourceVersion === resourceVersion;
  }

  /** A write of `key` starts; call `finished` when it has ended, however it ended. */
  started(key: string): void {
    if (!this.writing.has(key)) this.writing.set(key, []);
  }

  /**
   * While a write of `key` is in flight, holds the event that delivered `resourceVersion` and
   * returns true: it may be that write's echo, which only the write's answer can tell. `release`
   * is called when the write ends, unless the event was its echo (the caller then handles the
   * event as it would have).
   */
  heldDuringWrite(key: string, resourceVersion: string | undefined, release: () => void): boolean {
    const held = this.writing.get(key);
    held?.push({ resourceVersion, release });
    return held !== undefined;
  }

  /**
   * A write of `key` has ended; `written` is what it wrote, at which version (none when it wrote
   * nothing). That is remembered as by `put`, unless the cache delivered that very version
   * meanwhile. Every other event held meanwhile is released: a change that was not this write's.
   */
  finished(key: string, written?: { resourceVersion: string | undefined; value: T }): void {
    const held = this.writing.get(key) ?? [];
    this.writing.delete(key);
    const version = written?.resourceVersion;
    const echoed = version !== undefined && held.some((h) => h.resourceVersion === version);
    if (written && !echoed) this.put(key, version, written.value);
    for (const h of held) if (h.resourceVersion === undefined || h.resourceVersion !== version) h.release();
  }

  /** The cache delivered `resourceVersion` of `key` (or deleted it: pass undefined). */
  seen(key: string, resourceVersion: string | undefined): void {
    const e = this.entries.get(key);
    if (e && (resourceVersion === undefined || caughtUp(resourceVersion, e.resourceVersion))) this.entries.delete(key);
  }
}
