import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mock, test } from 'node:test';
import { promisify } from 'node:util';
import pino from 'pino';
import { collectIdleHeap } from './idle-gc.ts';

const log = pino({ level: 'silent' });
const MiB = 2 ** 20;

test('without a collector (no --expose-gc) nothing is watched', () => {
  assert.equal((globalThis as { gc?: unknown }).gc, undefined, 'this test runs without --expose-gc');
  assert.equal(collectIdleHeap({ log }), undefined);
});

/** A watcher over a heap whose size the test sets, on mocked timers: `tick` moves time by one look. */
function watched(opts: { growthMiB: number; minIntervalMs: number }) {
  mock.timers.enable({ apis: ['setInterval', 'Date'], now: 1_000_000 });
  let used = 20 * MiB;
  let collections = 0;
  const collector = collectIdleHeap({
    log,
    gc: () => {
      collections++;
      used = 16 * MiB; // what a collection leaves
    },
    heapUsed: () => used,
    growthBytes: opts.growthMiB * MiB,
    checkEveryMs: 1_000,
    minIntervalMs: opts.minIntervalMs,
  })!;
  return {
    set: (mib: number) => (used = mib * MiB),
    tick: () => mock.timers.tick(1_000),
    get collections() {
      return collections;
    },
    collect: (reason: string) => collector.collect(reason),
    stop: () => {
      collector.stop();
      mock.timers.reset();
    },
  };
}

test('a heap that grew is collected once it stops changing, not while it changes', () => {
  const h = watched({ growthMiB: 4, minIntervalMs: 0 });
  try {
    for (const mib of [22, 25, 28, 30]) {
      h.set(mib);
      h.tick();
    }
    assert.equal(h.collections, 0, 'the heap changed between every two looks');
    h.tick();
    assert.equal(h.collections, 1, 'quiet for one look, 10 MiB above the start: collected');
    h.set(19);
    h.tick();
    h.tick();
    assert.equal(h.collections, 1, 'quiet, but only 3 MiB above what the collection left');
  } finally {
    h.stop();
  }
});

test('at most one collection per interval', () => {
  const h = watched({ growthMiB: 4, minIntervalMs: 30_000 });
  try {
    h.set(30);
    h.tick();
    h.tick();
    assert.equal(h.collections, 1);
    h.set(30);
    h.tick();
    h.tick();
    assert.equal(h.collections, 1, 'grew and quiet again, within 30 s of the last collection');
    for (let i = 0; i < 30; i++) h.tick();
    assert.equal(h.collections, 2, 'after the interval');
  } finally {
    h.stop();
  }
});

test('a collection asked for runs at once, and counts as the last one for the interval and the growth', () => {
  const h = watched({ growthMiB: 4, minIntervalMs: 30_000 });
  try {
    h.set(21);
    h.collect('initial lists delivered');
    assert.equal(h.collections, 1, 'neither grown by 4 MiB nor quiet: collected because asked');
    h.set(30);
    h.tick();
    h.tick();
    assert.equal(h.collections, 1, 'grew and quiet again, within 30 s of the collection asked for');
    for (let i = 0; i < 30; i++) h.tick();
    assert.equal(h.collections, 2, 'after the interval');
  } finally {
    h.stop();
  }
});

test("with --expose-gc, V8's memory-reducing collection runs and frees what an idle heap kept", async () => {
  // A process of its own: the collector is the real one, and the heap the real heap.
  const code = `
    import pino from 'pino';
    import { collectIdleHeap } from ${JSON.stringify(new URL('./idle-gc.ts', import.meta.url).href)};
    const log = pino({ level: 'debug' });
    collectIdleHeap({ log, checkEveryMs: 100, minIntervalMs: 0, growthBytes: 2 ** 20 });
    let garbage = Array.from({ length: 200_000 }, (_, i) => ({ i, s: 'x' + i }));
    setTimeout(() => { garbage = undefined; }, 300);
    setTimeout(() => process.exit(0), 5_000);
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--input-type=module', '-e', code], {
    cwd: import.meta.dirname,
  });
  const collected = stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { msg: string; beforeBytes: number; afterBytes: number })
    .filter((l) => l.msg === 'heap collected');
  assert.ok(collected.length >= 1, `no collection logged: ${stdout}`);
  assert.ok(
    collected.some((c) => c.afterBytes < c.beforeBytes - 2 ** 20),
    JSON.stringify(collected),
  );
});
