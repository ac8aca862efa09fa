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

test('events delivered during a write are held; all but the echo of the write are released when it ends', () => {
  const w = new RecentWrites<string>();
  const released: string[] = [];
  const hold = (key: string, version: string | undefined) => w.heldDuringWrite(key, version, () => released.push(`${key}@${version}`));
  assert.equal(hold('a', '3'), false, 'no write in flight: the caller handles the event');
  w.started('a');
  assert.equal(hold('a', '9'), true, 'the echo may come before the answer');
  assert.equal(hold('b', '9'), false, 'another object');
  w.finished('a', { resourceVersion: '9', value: 'v9' });
  assert.deepEqual(released, [], 'only our own version came');
  assert.equal(w.get('a', undefined), undefined, 'the cache has delivered what we wrote: nothing to remember');
  assert.equal(hold('a', '10'), false, 'the write is over: nothing held any more');

  w.started('a');
  hold('a', '11');
  hold('a', '12');
  w.finished('a', { resourceVersion: '11', value: 'v11' });
  assert.deepEqual(released, ['a@12'], 'someone changed it right after our write');

  w.started('a');
  hold('a', '13');
  w.finished('a');
  assert.deepEqual(released, ['a@12', 'a@13'], 'the write wrote nothing (failed, or found it unchanged): the event was not ours');

  w.started('c');
  w.finished('c', { resourceVersion: '20', value: 'v20' });
  assert.equal(w.get('c', '19'), 'v20', 'nothing came: the answer is remembered until the cache shows it');
  assert.equal(w.isOwnWrite('c', '20'), true, 'and its echo, still to come, is recognised');
});
