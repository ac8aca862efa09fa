// A work queue of keys with the client-go semantics the controllers rely on: a key is queued at
// most once, never processed by two workers at once (an add during processing re-queues it after
// `done`), and failed keys come back with a per-key exponential delay.

import type { WorkQueueMetrics } from '../metrics.ts';

export interface WorkQueueOptions {
  baseDelayMs?: number;
  maxDelayMs?: number;
  metrics?: WorkQueueMetrics;
}

export class WorkQueue {
  private readonly items: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** When each queued key was added, and when each key in processing was handed out (for metrics). */
  private readonly since = new Map<string, number>();
  private readonly metrics: WorkQueueMetrics | undefined;
  private waiters: ((key: string | undefined) => void)[] = [];
  private closed = false;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;

  constructor(opts: WorkQueueOptions = {}) {
    this.baseDelayMs = opts.baseDelayMs ?? 200;
    this.maxDelayMs = opts.maxDelayMs ?? 60_000;
    this.metrics = opts.metrics;
  }

  private handOut(key: string): void {
    this.queued.delete(key);
    this.processing.add(key);
    const now = performance.now();
    this.metrics?.started((now - (this.since.get(key) ?? now)) / 1000);
    this.since.set(key, now);
  }

  /** Keys being processed. */
  get inFlight(): number {
    return this.processing.size;
  }

  /** Keys waiting (not counting those being processed). */
  get length(): number {
    return this.items.length;
  }

  add(key: string): void {
    if (this.closed) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.metrics?.added();
    this.since.set(key, performance.now());
    const waiter = this.waiters.shift();
    if (waiter) {
      this.handOut(key);
      waiter(key);
    } else {
      this.items.push(key);
    }
  }

  addAfter(key: string, delayMs: number): void {
    if (this.closed) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const existing = this.timers.get(key);
    if (existing) clearTimeout(existing);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.timers.set(key, timer);
  }

  /** Re-queues after a failure, waiting longer after each consecutive failure of the key. */
  addRateLimited(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    this.metrics?.retried();
    const delay = Math.min(this.baseDelayMs * 2 ** n, this.maxDelayMs);
    this.addAfter(key, delay);
    return delay;
  }

  /** Clears the key's failure count after a success. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  failureCount(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Next key to process, or undefined once shut down. Call `done(key)` when finished. */
  get(): Promise<string | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    const key = this.items.shift();
    if (key !== undefined) {
      this.handOut(key);
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  done(key: string): void {
    if (!this.processing.delete(key)) return;
    const startedAt = this.since.get(key);
    this.since.delete(key);
    if (startedAt !== undefined) this.metrics?.finished((performance.now() - startedAt) / 1000);
    if (this.dirty.delete(key)) this.add(key);
  }

  /** True when nothing is queued, delayed or being processed. */
  idle(): boolean {
    return this.items.length === 0 && this.processing.size === 0 && this.timers.size === 0;
  }

  shutdown(): void {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    for (const w of this.waiters.splice(0)) w(undefined);
  }
}
