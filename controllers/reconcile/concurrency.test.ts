import assert from 'node:assert/strict';
import { test } from 'node:test';
import { forEachConcurrently, Semaphore } from './concurrency.ts';

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

test('a semaphore keeps at most its limit running and runs every call', async () => {
  const s = new Semaphore(3);
  let inFlight = 0;
  let most = 0;
  const results = await Promise.all(
    [...Array(20).keys()].map((i) =>
      s.run(async () => {
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
});
