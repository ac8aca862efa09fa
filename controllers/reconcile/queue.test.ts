import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WorkQueue } from './queue.ts';

describe('WorkQueue', () => {
  it('dedupes queued keys and keeps order', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    assert.equal(q.length, 2);
    assert.equal(await q.get(), 'a');
    assert.equal(await q.get(), 'b');
  });

  it('never hands out a key being processed; an add meanwhile re-queues it after done', async () => {
    const q = new WorkQueue();
    q.add('a');
    const k = await q.get();
    q.add('a');
    assert.equal(q.length, 0);
    q.done(k!);
    assert.equal(q.length, 1);
    assert.equal(await q.get(), 'a');
  });

  it('wakes a waiting worker', async () => {
    const q = new WorkQueue();
    const p = q.get();
    q.add('x');
    assert.equal(await p, 'x');
    assert.ok(!q.idle());
    q.done('x');
    assert.ok(q.idle());
  });

  it('backs off exponentially per key and forgets on success', async () => {
    const q = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 35 });
    assert.equal(q.addRateLimited('a'), 10);
    assert.equal(q.addRateLimited('a'), 20);
    assert.equal(q.addRateLimited('a'), 35);
    assert.equal(q.addRateLimited('b'), 10);
    const started = Date.now();
    assert.equal(await q.get(), 'b');
    q.done('b');
    assert.equal(await q.get(), 'a');
    assert.ok(Date.now() - started >= 30);
    q.forget('a');
    assert.equal(q.failureCount('a'), 0);
  });

  it('shutdown releases waiting workers', async () => {
    const q = new WorkQueue();
    const p = q.get();
    q.shutdown();
    assert.equal(await p, undefined);
  });
});
