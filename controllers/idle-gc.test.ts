import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { collectIdleHeap } from './idle-gc.ts';

const log = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Objects kept alive, so that the heap grows by about `bytes`. */
const grow = (bytes: number) => Array.from({ length: bytes / 64 }, (_, i) => ({ i, s: `x${i}` }));

test('without a collector (no --expose-gc) nothing is watched', () => {
  assert.equal((globalThis as { gc?: unknown }).gc, undefined, 'this test runs without --expose-gc');
  assert.equal(collectIdleHeap({ log }), undefined);
});

test('a heap that grew is collected once the process is quiet, then not again within the interval', async () => {
  let collections = 0;
  const stop = collectIdleHeap({ log, gc: () => collections++, growthBytes: 2 ** 20, checkEveryMs: 50, minIntervalMs: 60_000 })!;
  try {
    const kept = grow(4 * 2 ** 20);
    await until('a collection', () => collections === 1);
    const more = grow(4 * 2 ** 20);
    await sleep(500);
    assert.equal(collections, 1, 'at most one collection per interval');
    assert.ok(kept.length > 0 && more.length > 0);
  } finally {
    stop();
  }
});

test('no collection while the heap keeps changing', async () => {
  let collections = 0;
  const stop = collectIdleHeap({ log, gc: () => collections++, growthBytes: 2 ** 20, checkEveryMs: 100, minIntervalMs: 0 })!;
  const kept: unknown[] = [];
  const busy = setInterval(() => kept.push(grow(2 ** 20)), 10);
  try {
    await sleep(1_000);
    assert.equal(collections, 0, 'the heap changed between every two looks');
  } finally {
    clearInterval(busy);
  }
  try {
    await until('a collection once quiet', () => collections === 1);
  } finally {
    stop();
  }
});
