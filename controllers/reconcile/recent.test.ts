import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RecentWrites } from './recent.ts';

test('a written value is used until the cache holds that version or a later one', () => {
  const w = new RecentWrites<string>();
  w.put('k', '100', 'written');
  assert.equal(w.get('k', undefined), 'written', 'not in the cache yet');
  assert.equal(w.get('k', '99'), 'written', 'the cache is behind');
  assert.equal(w.get('k', '101'), undefined, 'the cache moved past our write (its event came first)');
  assert.equal(w.get('k', '99'), undefined, 'and the entry is gone');
});

test('seen ends an entry at the written version, a later one, or a delete', () => {
  const w = new RecentWrites<string>();
  w.put('a', '5', 'x');
  w.seen('a', '4');
  assert.equal(w.get('a', '4'), 'x');
  w.seen('a', '5');
  assert.equal(w.get('a', undefined), undefined);
  w.put('b', '5', 'y');
  w.seen('b', undefined);
  assert.equal(w.get('b', undefined), undefined);
});

test('isOwnWrite tells the echo of our write from any other version', () => {
  const w = new RecentWrites<string>();
  w.put('a', '7', 'x');
  assert.equal(w.isOwnWrite('a', '7'), true, 'the version we wrote');
  assert.equal(w.isOwnWrite('a', '8'), false, 'someone changed it after us');
  assert.equal(w.isOwnWrite('a', undefined), false, 'a delete');
  assert.equal(w.isOwnWrite('b', '7'), false, 'never written');
  w.seen('a', '7');
  assert.equal(w.isOwnWrite('a', '7'), false, 'seen once: a later delivery of it is a relist, not an echo');
});

test('events delivered during a write are held, and only a version other than the written one counts as a change', () => {
  const w = new RecentWrites<string>();
  assert.equal(w.heldDuringWrite('a', '3'), false, 'no write in flight: the caller handles the event');
  w.started('a');
  assert.equal(w.heldDuringWrite('a', '9'), true, 'the echo may come before the answer');
  assert.equal(w.heldDuringWrite('b', '9'), false, 'another object');
  assert.equal(w.finished('a', { resourceVersion: '9', value: 'v9' }), false, 'only our own version came');
  assert.equal(w.get('a', undefined), undefined, 'the cache has delivered what we wrote: nothing to remember');
  assert.equal(w.heldDuringWrite('a', '10'), false, 'the write is over: nothing held any more');

  w.started('a');
  w.heldDuringWrite('a', '11');
  w.heldDuringWrite('a', '12');
  assert.equal(w.finished('a', { resourceVersion: '11', value: 'v11' }), true, 'someone changed it right after our write');

  w.started('a');
  w.heldDuringWrite('a', '13');
  assert.equal(w.finished('a'), true, 'the write wrote nothing (failed, or found it unchanged): the event was not ours');

  w.started('c');
  assert.equal(w.finished('c', { resourceVersion: '20', value: 'v20' }), false, 'nothing came');
  assert.equal(w.get('c', '19'), 'v20', 'the answer is remembered until the cache shows it');
  assert.equal(w.isOwnWrite('c', '20'), true, 'and its echo, still to come, is recognised');
});
