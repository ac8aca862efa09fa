import assert from 'node:assert/strict';
import { test } from 'node:test';
import { forEachConcurrently, WriteLimiter } from './concurrency.ts';

test('runs every item once, never more than the limit at a time', async () => {
  let inFlight = 0;
  let most = 0;
  const seen: number[] = [];
  await forEachConcurrently([...Array(50).keys()], 8, async (i) => {
    inFlight++;
    most = Math.max(most, inFlight);
    await new Promise((r) => setTimeout(r, (i * 7) % 5));
    seen.push(i);
    inFlight--;
  });
  assert.deepEqual(
    seen.sort((a, b) => a - b),
    [...Array(50).keys()],
  );
  assert.equal(most, 8);
});

test('an empty list and a limit above the length are fine', async () => {
  await forEachConcurrently([], 8, async () => assert.fail('not called'));
  let n = 0;
  await forEachConcurrently([1, 2], 8, async () => {
    n++;
  });
  assert.equal(n, 2);
});

test('a limiter keeps at most its limit running and runs every call', async () => {
  const limiter = new WriteLimiter(3);
  let inFlight = 0;
  let most = 0;
  const results = await Promise.all(
    [...Array(20).keys()].map((i) =>
      limiter.run(i % 2 ? 'object' : 'deferred', async () => {
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise((r) => setTimeout(r, i % 3));
        inFlight--;
        return i;
      }),
    ),
  );
  assert.deepEqual(results, [...Array(20).keys()]);
  assert.equal(most, 3);
  assert.equal(inFlight, 0);
  assert.deepEqual(limiter.counts, { active: { object: 0, deferred: 0 }, queued: { object: 0, deferred: 0 } });
});

/** A call that runs until `finish()`; `started` says whether it has begun. */
function held(limiter: WriteLimiter, priority: 'object' | 'deferred', log: string[], name: string) {
  let finish!: () => void;
  const gate = new Promise<void>((r) => (finish = r));
  const state = { started: false, finish, done: undefined as unknown as Promise<void> };
  state.done = limiter.run(priority, async () => {
    state.started = true;
    log.push(name);
    await gate;
  });
  return state;
}

const tick = () => new Promise((r) => setImmediate(r));

test('a waiting object write starts before deferred writes that came earlier', async () => {
  const limiter = new WriteLimiter(1);
  const log: string[] = [];
  const first = held(limiter, 'object', log, 'object 1');
  const status = held(limiter, 'deferred', log, 'status');
  const second = held(limiter, 'object', log, 'object 2');
  await tick();
  assert.deepEqual(log, ['object 1']);
  first.finish();
  await first.done;
  await tick();
  assert.deepEqual(log, ['object 1', 'object 2']);
  second.finish();
  await second.done;
  await tick();
  assert.deepEqual(log, ['object 1', 'object 2', 'status']);
  status.finish();
  await status.done;
});

test('a deferred write waits while any object write is in flight, and starts at once when none is', async () => {
  const limiter = new WriteLimiter(10);
  const log: string[] = [];
  const alone = held(limiter, 'deferred', log, 'status alone');
  await tick();
  assert.equal(alone.started, true, 'nothing else is written: a deferred write goes at once');
  const object = held(limiter, 'object', log, 'object');
  const status = held(limiter, 'deferred', log, 'status');
  await tick();
  assert.equal(object.started, true);
  assert.equal(status.started, false, 'held back while the object write is in flight, although slots are free');
  assert.deepEqual(limiter.counts.queued, { object: 0, deferred: 1 });
  object.finish();
  await object.done;
  await tick();
  assert.equal(status.started, true);
  alone.finish();
  status.finish();
  await Promise.all([alone.done, status.done]);
});

test('a deferred write held back by a stream of object writes starts once it has waited the longest deferral', async () => {
  const limiter = new WriteLimiter(10, { maxDeferMs: 60 });
  const log: string[] = [];
  const object = held(limiter, 'object', log, 'object');
  const startedAt = Date.now();
  const status = held(limiter, 'deferred', log, 'status');
  await tick();
  assert.equal(status.started, false);
  const deadline = Date.now() + 5_000;
  while (!status.started && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.equal(status.started, true, 'the deferred write started while the object write was still in flight');
  assert.ok(Date.now() - startedAt >= 55, `started after ${Date.now() - startedAt} ms, before its deferral ran out`);
  object.finish();
  status.finish();
  await Promise.all([object.done, status.done]);
});

test('objectsSettled resolves once no object write is queued or in flight, or after the longest deferral', async () => {
  const limiter = new WriteLimiter(1, { maxDeferMs: 10_000 });
  const log: string[] = [];
  let settled = false;
  await limiter.objectsSettled();
  const first = held(limiter, 'object', log, 'object 1');
  const second = held(limiter, 'object', log, 'object 2');
  const waiting = limiter.objectsSettled().then(() => (settled = true));
  first.finish();
  await first.done;
  await tick();
  assert.equal(settled, false, 'an object write is still queued, then in flight');
  second.finish();
  await second.done;
  await waiting;
  assert.equal(settled, true);

  const impatient = new WriteLimiter(1, { maxDeferMs: 30 });
  const stream = held(impatient, 'object', log, 'object 3');
  const startedAt = Date.now();
  await impatient.objectsSettled();
  assert.ok(Date.now() - startedAt >= 25, 'waited for the longest deferral');
  assert.equal(stream.started, true, 'while the object write was still in flight');
  stream.finish();
  await stream.done;
});

test('a deferred write that has waited the longest deferral takes the next free slot before waiting object writes', async () => {
  const limiter = new WriteLimiter(1, { maxDeferMs: 30 });
  const log: string[] = [];
  const first = held(limiter, 'object', log, 'object 1');
  const status = held(limiter, 'deferred', log, 'status');
  const second = held(limiter, 'object', log, 'object 2');
  await new Promise((r) => setTimeout(r, 60));
  assert.deepEqual(log, ['object 1'], 'every slot is taken: nothing else started meanwhile');
  first.finish();
  await first.done;
  await tick();
  assert.deepEqual(log, ['object 1', 'status']);
  status.finish();
  await status.done;
  await tick();
  assert.deepEqual(log, ['object 1', 'status', 'object 2']);
  second.finish();
  await second.done;
});
