import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1ObjectMeta } from '@kubernetes/client-node';
import { seededRandom } from '../../test/seeded-random.ts';
import { ANNOTATION_RENDER_HASH } from '../api/v1alpha1.ts';
import { jsonEqual, stableStringify, withRenderHash } from './common.ts';

/** The canonical form by its definition, in the plainest code: what stableStringify must equal. */
function reference(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : reference(v))).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const parts = Object.keys(obj)
    .sort()
    .filter((k) => obj[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${reference(obj[k])}`);
  return `{${parts.join(',')}}`;
}

const KEYS = ['a', 'b', 'name', 'labels', 'spec', '10', '9', 'k"q', 'ü', '', 'constructor'];
const STRINGS = ['', 'x', 'zürich', '東京', '🛰', 'a"b', 'back\\slash', 'line\nbreak', '10'];

/** A JSON-like value: objects with keys in any order, undefined properties and items, odd numbers. */
function value(rnd: () => number, depth: number): unknown {
  const r = rnd();
  if (depth <= 0 || r < 0.35) {
    const scalars = [null, undefined, true, false, 0, -0, 1, 2.5, -7, Number.NaN, Number.POSITIVE_INFINITY];
    return rnd() < 0.5 ? scalars[Math.floor(rnd() * scalars.length)] : STRINGS[Math.floor(rnd() * STRINGS.length)];
  }
  if (r < 0.55) return Array.from({ length: Math.floor(rnd() * 4) }, () => value(rnd, depth - 1));
  const obj: Record<string, unknown> = {};
  for (let i = Math.floor(rnd() * 5); i > 0; i--) obj[KEYS[Math.floor(rnd() * KEYS.length)]!] = value(rnd, depth - 1);
  return obj;
}

/** The same value rebuilt with its keys in another order, and undefined where JSON has nothing or null. */
function reshuffled(rnd: () => number, v: unknown): unknown {
  if (Array.isArray(v)) return v.map((x) => (x === null && rnd() < 0.5 ? undefined : reshuffled(rnd, x)));
  if (v === null || typeof v !== 'object') return v;
  const entries = Object.entries(v).sort(() => rnd() - 0.5);
  const out: Record<string, unknown> = {};
  for (const [k, x] of entries) out[k] = reshuffled(rnd, x);
  if (rnd() < 0.3) out.extra = undefined;
  return out;
}

/** A copy with one thing changed somewhere (or, now and then, nothing that JSON would show). */
function nudged(rnd: () => number, v: unknown): unknown {
  if (Array.isArray(v)) {
    if (v.length === 0 || rnd() < 0.2) return [...v, 1];
    const i = Math.floor(rnd() * v.length);
    return v.map((x, j) => (j === i ? nudged(rnd, x) : x));
  }
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v);
    if (keys.length === 0 || rnd() < 0.2) return { ...v, [KEYS[Math.floor(rnd() * KEYS.length)]!]: rnd() < 0.5 ? null : undefined };
    const k = keys[Math.floor(rnd() * keys.length)]!;
    return { ...v, [k]: nudged(rnd, (v as Record<string, unknown>)[k]) };
  }
  const others: unknown[] = [null, 0, '0', '', false, {}, [], undefined];
  return others[Math.floor(rnd() * others.length)];
}

describe('stableStringify', () => {
  it('ignores key order and undefined', () => {
    assert.equal(stableStringify({ b: 1, a: [{ d: 1, c: undefined }] }), stableStringify({ a: [{ d: 1 }], b: 1 }));
  });

  it('gives the text of its definition (sorted keys, undefined dropped or null in arrays) for any JSON-like value', () => {
    for (let seed = 1; seed <= 3000; seed++) {
      const v = value(seededRandom(seed), 4);
      assert.equal(stableStringify(v), reference(v), `seed ${seed}`);
    }
  });

  it('keeps render hashes: the same object hashes as it always has', () => {
    // Render hashes are stored on live objects: a change here would rewrite every object once.
    const obj: { metadata: V1ObjectMeta; [field: string]: unknown } = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web-zürich', namespace: 'ns', labels: { b: '2', a: '1' } },
      spec: { replicas: 2, list: [1, 'two', null, { y: true, x: false }], empty: {}, skipped: undefined },
    };
    assert.equal(
      stableStringify(obj),
      '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"labels":{"a":"1","b":"2"},"name":"web-zürich","namespace":"ns"},"spec":{"empty":{},"list":[1,"two",null,{"x":false,"y":true}],"replicas":2}}',
    );
    assert.equal(withRenderHash(obj).metadata.annotations?.[ANNOTATION_RENDER_HASH], '997c31f032c7b01c');
  });
});

describe('jsonEqual', () => {
  it('is true exactly when stableStringify gives the same text', () => {
    let equal = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const rnd = seededRandom(seed);
      const a = value(rnd, 4);
      for (const b of [reshuffled(rnd, a), nudged(rnd, a), value(rnd, 4)]) {
        const same = stableStringify(a) === stableStringify(b);
        if (same) equal++;
        assert.equal(jsonEqual(a, b), same, `seed ${seed}: ${reference(a)} vs ${reference(b)}`);
        assert.equal(jsonEqual(b, a), same, `seed ${seed}, swapped`);
      }
    }
    assert.ok(equal > 3000, `both answers are exercised (${equal} equal pairs)`);
  });

  it('tells apart what JSON tells apart', () => {
    assert.equal(jsonEqual({ a: 1 }, { a: 1, b: null }), false, 'null is a value');
    assert.equal(jsonEqual({ a: 1 }, { a: 1, b: undefined }), true, 'undefined is nothing');
    assert.equal(jsonEqual([undefined], [null]), true, 'an undefined item is null');
    assert.equal(jsonEqual(undefined, null), false);
    assert.equal(jsonEqual({}, []), false);
    assert.equal(jsonEqual({ constructor: 1 }, {}), false, 'inherited properties are not properties');
    assert.equal(jsonEqual(Number.NaN, null), true, 'NaN is written as null');
    assert.equal(jsonEqual('1', 1), false);
  });
});
