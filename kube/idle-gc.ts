// One full garbage collection once the process is quiet again after its heap grew. V8 shrinks an
// idle heap only through its memory reducer, which runs after start and then only once the heap
// has grown by some 10 MiB since its last run. A burst of work (the controller's resync of 100
// grids × 20 units, the wrapper's initial lists) promotes short-lived objects into the old space
// (~8 MiB); the next full collection is due only when the old space grows by V8's minimum step,
// so an idle process kept that garbage, resident, until then (README, "The controller's memory").
// Needs `gc`, which Node provides with --expose-gc (both programs' manifests set it); without it
// this does nothing. The collection asked for is V8's memory-reducing one (`last-resort`): a plain full
// collection frees the garbage but leaves its pages resident.

import { getHeapStatistics } from 'node:v8';
import type { Logger } from 'pino';

export interface IdleHeapOptions {
  log: Logger;
  /** Collect when the heap holds this much more than after the last collection (default 4 MiB). */
  growthBytes?: number;
  /** How often to look (default 2 s); quiet means the heap did not change between two looks. */
  checkEveryMs?: number;
  /** At most one collection this often (default 30 s). */
  minIntervalMs?: number;
  /** The collector; default the memory-reducing collection of --expose-gc's `gc`. */
  gc?: () => void;
  /** The heap's size in use; default V8's. */
  heapUsed?: () => number;
}

type ExposedGc = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

function exposedGc(): (() => void) | undefined {
  const gc = (globalThis as { gc?: ExposedGc }).gc;
  return gc && (() => gc({ type: 'major', execution: 'sync', flavor: 'last-resort' }));
}

export interface IdleHeapCollector {
  /** Stops watching the heap. */
  stop(): void;
  /**
   * Collects now, whatever the heap grew by and however recently it was collected: for the end of
   * a burst the program itself knows of (the wrapper's initial lists), whose garbage would
   * otherwise stay resident until the heap is next seen quiet, up to `minIntervalMs` later if a
   * pause in the burst was taken for quiet.
   */
  collect(reason: string): void;
}

/** Starts watching the heap; undefined when no collector is available. */
export function collectIdleHeap(opts: IdleHeapOptions): IdleHeapCollector | undefined {
  const gc = opts.gc ?? exposedGc();
  if (!gc) return undefined;
  const growth = opts.growthBytes ?? 4 * 2 ** 20;
  const minInterval = opts.minIntervalMs ?? 30_000;
  /** Allocation between two looks smaller than this counts as quiet (timers, a bookmark). */
  const quiet = 256 * 2 ** 10;
  const heapUsed = opts.heapUsed ?? (() => getHeapStatistics().used_heap_size);
  let baseline = heapUsed();
  let previous = baseline;
  let lastAt = 0;
  const collect = (reason: string) => {
    const used = heapUsed();
    const started = performance.now();
    gc();
    lastAt = Date.now();
    baseline = previous = heapUsed();
    opts.log.debug({ reason, beforeBytes: used, afterBytes: baseline, ms: Math.round(performance.now() - started) }, 'heap collected');
  };
  const timer = setInterval(() => {
    const used = heapUsed();
    const changed = Math.abs(used - previous) >= quiet;
    previous = used;
    if (changed || used - baseline < growth || Date.now() - lastAt < minInterval) return;
    collect('idle after growing');
  }, opts.checkEveryMs ?? 2_000);
  timer.unref();
  return { stop: () => clearInterval(timer), collect };
}
