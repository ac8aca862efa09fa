import assert from 'node:assert/strict';
import { test } from 'node:test';
import { splitList } from './jsonlist.ts';

const split = (v: unknown, text = JSON.stringify(v)) => {
  const l = splitList<unknown>(Buffer.from(text));
  return { head: l.head, count: l.count, items: [...l.items()] };
};

test('a list splits into its fields and its items, each parsed as JSON.parse would', () => {
  const items = [
    {
      metadata: { name: 'a', annotations: { tricky: '}]{["\\"', é: 'ü 中文 😀' } },
      spec: { ports: [{ port: 80 }], n: null, t: true, x: -1.5e3 },
    },
    { metadata: { name: 'b' }, endpoints: [] },
    'scalar',
    42,
  ];
  const list = { kind: 'ThingList', apiVersion: 'v1', metadata: { resourceVersion: '17', continue: '' }, items };
  assert.deepEqual(split(list), { head: { kind: 'ThingList', apiVersion: 'v1', metadata: list.metadata }, count: 4, items });
  assert.deepEqual(split(list, JSON.stringify(list, null, 2)).items, items, 'indented');
  const { items: _items, ...rest } = list;
  assert.deepEqual(split(list, JSON.stringify({ items, ...rest })).head.metadata, list.metadata, 'items first');
  assert.deepEqual(split({ kind: 'L', metadata: {}, items: [] }), { head: { kind: 'L', metadata: {} }, count: 0, items: [] });
  assert.deepEqual(split({ kind: 'L', items: null }), { head: { kind: 'L' }, count: 0, items: [] });
});

test('malformed bodies are errors, not partial lists', () => {
  for (const text of ['', '[]', '{"items":[{"a":1}', '{"items":[{"a":"x}]}', '{"a" 1}', '{"items":[1 2]}']) {
    assert.throws(() => split(undefined, text), SyntaxError, text);
  }
});
