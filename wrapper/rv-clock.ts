// The wrapper's own resourceVersions. It serves a derived view (filtered slices change when a node
// is relabelled, with no upstream change), so upstream resourceVersions cannot be passed through:
// it issues its own from one monotonic clock. The clock starts at (start time in ms) * 1000, or
// above the high-water mark a previous run made durable if that is higher, so a resourceVersion
// from a previous run is smaller than any of this run and is answered with 410 Expired.

export interface RvClockOptions {
  /** The high-water mark a previous run made durable: this run starts above it. */
  floor?: number;
  /**
   * Makes a new high-water mark durable; called (synchronously, once per `block` versions) before
   * the clock issues a version above the last one reserved.
   */
  reserve?: (ceiling: number) => void;
  block?: number;
}

export class RvClock {
  readonly start: number;
  private value: number;
  private reserved = Number.POSITIVE_INFINITY;
  private readonly reserve: ((ceiling: number) => void) | undefined;
  private readonly block: number;
  constructor(nowMs: number = Date.now(), opts: RvClockOptions = {}) {
    this.start = Math.max(nowMs * 1000, (opts.floor ?? 0) + 1);
    this.value = this.start;
    this.reserve = opts.reserve;
    this.block = opts.block ?? 1_000_000;
    if (this.reserve) this.extend();
  }
  get current(): number {
    return this.value;
  }
  next(): number {
    if (this.value + 1 > this.reserved) this.extend();
    return ++this.value;
  }
  private extend(): void {
    this.reserved = this.value + this.block;
    this.reserve!(this.reserved);
  }
}
