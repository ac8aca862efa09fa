import assert from 'node:assert/strict';
import { test } from 'node:test';
import { releasePage, splitList } from './jsonlist.ts';

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

/** A small seeded generator (mulberry32), so that a failing case can be replayed from its seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Characters that matter to a splitter: structure inside strings, escapes, multi-byte UTF-8.
const TRICKY = ['{', '}', '[', ']', '"', '\\', ',', ':', ' ', '\n', '\t', '\u0000', '\u001f', 'é', '中', '😀', '\u2028', 'a', '0'];

function randomValue(rnd: () => number, depth: number): unknown {
  const pick = Math.floor(rnd() * (depth > 3 ? 5 : 7));
  switch (pick) {
    case 0:
      return null;
    case 1:
      return rnd() < 0.5;
    case 2:
      return rnd() < 0.5 ? Math.floor(rnd() * 2000) - 1000 : (rnd() - 0.5) * 1e6;
    case 3:
    case 4:
      return Array.from({ length: Math.floor(rnd() * 12) }, () => TRICKY[Math.floor(rnd() * TRICKY.length)]).join('');
    case 5:
      return Array.from({ length: Math.floor(rnd() * 4) }, () => randomValue(rnd, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(rnd() * 4); i > 0; i--) o[String(randomValue(rnd, 99))] = randomValue(rnd, depth + 1);
      return o;
    }
  }
}

test('random lists round-trip: JSON.stringify, split, equal head and items', () => {
  const seed = Number(process.env.JSONLIST_SEED ?? Date.now() % 1_000_000);
  const rnd = random(seed);
  for (let n = 0; n < 500; n++) {
    const items = Array.from({ length: Math.floor(rnd() * 6) }, () =>
      rnd() < 0.8 ? { metadata: { name: randomValue(rnd, 99) }, spec: randomValue(rnd, 1) } : randomValue(rnd, 1),
    );
    const head = { kind: randomValue(rnd, 99), metadata: { resourceVersion: String(n), extra: randomValue(rnd, 2) } };
    // Items anywhere among the fields, compact or indented.
    const list = rnd() < 0.5 ? { ...head, items } : { items, ...head };
    const text = JSON.stringify(list, null, rnd() < 0.3 ? 2 : undefined);
    const got = split(undefined, text);
    assert.deepEqual(got.items, items, `seed ${seed}, case ${n}: ${text}`);
    assert.deepEqual(got.head, JSON.parse(JSON.stringify(head)), `seed ${seed}, case ${n}: ${text}`);
    assert.equal(got.count, items.length);
  }
});

test('releasePage frees a page that owns its memory, and nothing that shares memory with other Buffers', () => {
  const page = Buffer.concat([Buffer.from('{"items":['), Buffer.alloc(100_000, 0x20), Buffer.from(']}')]);
  assert.equal(splitList(page).count, 0);
  releasePage(page);
  assert.equal(page.length, 0, 'the page is detached: its memory is freed now, not at the next full collection');
  const pooled = Buffer.from('{"items":[]}');
  const neighbour = Buffer.from('still here');
  releasePage(pooled);
  assert.equal(pooled.toString(), '{"items":[]}', 'a Buffer cut from the shared pool is left alone');
  assert.equal(neighbour.toString(), 'still here');
  const view = Buffer.alloc(200_000).subarray(10);
  releasePage(view);
  assert.equal(view.length, 199_990, 'a view into part of a memory block is left alone');
});
