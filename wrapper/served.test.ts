import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RvClock } from './rv-clock.ts';
import { ServedResource } from './served.ts';
import type { WatchSink } from './watcher.ts';

class Sink implements WatchSink {
  lines: { type: string; object: { metadata: { name: string; resourceVersion: string; annotations?: Record<string, string> } } }[] = [];
  writableLength = 0;
  writableEnded = false;
  stalled = false;
  write(chunk: Buffer): boolean {
    if (this.stalled) this.writableLength += chunk.length;
    else
      this.lines.push(
        ...chunk
          .toString()
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l)),
      );
    return !this.stalled;
  }
  end(): void {
    this.writableEnded = true;
  }
  get types() {
    return this.lines.map((l) => `${l.type}:${l.object.metadata.name ?? ''}`);
  }
}

const obj = (name: string, labels: Record<string, string> = {}, data = '') => ({ metadata: { name, labels }, data });
const setup = (logSize = 100) => {
  const clock = new RvClock(1_000);
  const counts = { encoded: 0, sent: 0, slow: 0 };
  const served = new ServedResource('things', clock, {
    kind: 'Thing',
    apiVersion: 'v1',
    logSize,
    maxBufferedBytes: 1000,
    metrics: { encoded: () => counts.encoded++, sent: () => counts.sent++, slowWatcherClosed: () => counts.slow++, watchers() {} },
  });
  return { clock, served, counts };
};

test('own resourceVersions; unchanged content emits nothing', () => {
  const { served, clock } = setup();
  assert.equal(clock.start, 1_000_000);
  assert.equal(served.apply('a', obj('a')), 'ADDED');
  assert.equal(served.get('a')!.metadata.resourceVersion, '1000001');
  assert.equal(served.apply('a', { ...obj('a'), metadata: { name: 'a', labels: {}, resourceVersion: '999' } }), undefined);
  assert.equal(served.apply('a', obj('a', {}, 'x')), 'MODIFIED');
  assert.equal(served.apply('b', undefined), undefined);
  assert.equal(served.apply('a', undefined), 'DELETED');
  assert.equal(served.list(undefined).resourceVersion, '1000003');
});

test('list then watch from its resourceVersion: no gap, no duplicate; one encoding for N watchers', () => {
  const { served, counts } = setup();
  served.apply('a', obj('a'));
  const rv = Number(served.list(undefined).resourceVersion);
  served.apply('b', obj('b'));
  const sinks = [new Sink(), new Sink(), new Sink()];
  for (const s of sinks) served.watch(s, { fromRv: rv, initialEventsEnd: false, bookmarks: false, match: undefined });
  served.apply('a', obj('a', {}, 'x'));
  for (const s of sinks) assert.deepEqual(s.types, ['ADDED:b', 'MODIFIED:a']);
  assert.equal(counts.encoded, 2, 'each event encoded once for three watchers');
  assert.equal(counts.sent, 6);
});

test('410 for versions before this run, before the log, and not issued', () => {
  const { served, clock } = setup(2);
  const start = clock.current;
  assert.equal(served.expiredReason(start), undefined);
  assert.match(served.expiredReason(start - 5)!, /before this wrapper started/);
  for (const n of ['a', 'b', 'c']) served.apply(n, obj(n));
  assert.match(served.expiredReason(start)!, /too old resource version/);
  assert.equal(served.expiredReason(start + 1), undefined, 'the log still holds b and c');
  assert.match(served.expiredReason(clock.current + 1)!, /not issued/);
});

test('a forgotten event log: older versions get 410, the current state and later changes are served', () => {
  const { served, clock } = setup();
  for (const n of ['a', 'b']) served.apply(n, obj(n));
  const before = clock.current - 1;
  served.forgetEvents();
  const now = clock.current;
  assert.match(served.expiredReason(before)!, /too old resource version/);
  assert.equal(served.expiredReason(now), undefined);
  served.apply('c', obj('c'));
  served.apply('a', obj('a', {}, 'x'));
  const fromNow = new Sink();
  served.watch(fromNow, { fromRv: now, initialEventsEnd: false, bookmarks: false, match: undefined });
  assert.deepEqual(fromNow.types, ['ADDED:c', 'MODIFIED:a'], 'replayed exactly from the log kept after forgetting');
  const initial = new Sink();
  served.watch(initial, { fromRv: undefined, initialEventsEnd: false, bookmarks: false, match: undefined });
  assert.deepEqual(initial.types.sort(), ['ADDED:a', 'ADDED:b', 'ADDED:c'], 'the objects themselves are kept');
});

test('initial state, streaming-list end bookmark, bookmarks', () => {
  const { served } = setup();
  served.apply('a', obj('a'));
  served.apply('b', obj('b'));
  const s = new Sink();
  served.watch(s, { fromRv: undefined, initialEventsEnd: true, bookmarks: true, match: undefined });
  assert.deepEqual(s.types, ['ADDED:a', 'ADDED:b', 'BOOKMARK:']);
  assert.deepEqual(s.lines[2]!.object.metadata.annotations, { 'k8s.io/initial-events-end': 'true' });
  served.bookmark();
  assert.equal(s.lines[3]!.type, 'BOOKMARK');
  assert.equal(s.lines[3]!.object.metadata.resourceVersion, served.list(undefined).resourceVersion);
});

test('selectors: objects entering and leaving the selection become ADDED and DELETED', () => {
  const { served } = setup();
  const s = new Sink();
  served.watch(s, { fromRv: undefined, initialEventsEnd: false, bookmarks: false, match: (o) => o.metadata.labels?.pick === 'y' });
  served.apply('a', obj('a', { pick: 'n' }));
  served.apply('a', obj('a', { pick: 'y' }));
  served.apply('a', obj('a', { pick: 'y' }, 'x'));
  served.apply('a', obj('a', { pick: 'n' }));
  served.apply('b', obj('b', { pick: 'y' }));
  served.apply('b', undefined);
  assert.deepEqual(s.types, ['ADDED:a', 'MODIFIED:a', 'DELETED:a', 'ADDED:b', 'DELETED:b']);
});

test('a watcher that does not read is closed, the others keep receiving', () => {
  const { served, counts } = setup();
  const slow = new Sink();
  const fast = new Sink();
  const w = served.watch(slow, { fromRv: undefined, initialEventsEnd: false, bookmarks: false, match: undefined });
  served.watch(fast, { fromRv: undefined, initialEventsEnd: false, bookmarks: false, match: undefined });
  slow.stalled = true;
  for (let i = 0; i < 50; i++) served.apply(`o${i}`, obj(`o${i}`, {}, 'x'.repeat(50)));
  assert.equal(w.closed, true);
  assert.equal(slow.writableEnded, true);
  assert.equal(counts.slow, 1);
  assert.equal(fast.lines.length, 50);
  assert.equal(served.watcherCount, 1);
});
