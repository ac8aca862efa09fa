// Pieces shared by both grid renderers: template choice per unit, owner references, labels and
// the render hash that lets reconcile skip writes when nothing changed.

import { hash } from 'node:crypto';
import type { V1ObjectMeta, V1OwnerReference } from '@kubernetes/client-node';
import {
  ANNOTATION_RENDER_HASH,
  API_VERSION,
  DEFAULT_TEMPLATE_NAME,
  LABEL_GRID,
  LABEL_MANAGED_BY,
  LABEL_UNIT,
  MANAGED_BY,
} from '../api/v1alpha1.ts';

export interface GridLike<T> {
  kind: string;
  metadata: V1ObjectMeta;
  spec: {
    template: T;
    templatePool?: Record<string, T>;
    templates?: Record<string, string>;
    defaultTemplateName?: string;
  };
}

export type TemplateChoice<T> = { name: string; template: T } | { name: string; error: string };

/** `templates[unit]` → pool entry, else `defaultTemplateName` (unless empty/`default`), else `template`. */
export function chooseTemplate<T>(grid: GridLike<T>, unit: string): TemplateChoice<T> {
  const { template, templatePool = {}, templates = {}, defaultTemplateName } = grid.spec;
  const fromPool = (name: string, why: string): TemplateChoice<T> => {
    if (name === DEFAULT_TEMPLATE_NAME && !Object.hasOwn(templatePool, name)) return { name, template };
    if (!Object.hasOwn(templatePool, name))
      return { name, error: `${why} names template ${JSON.stringify(name)}, which is not in templatePool` };
    return { name, template: templatePool[name]! };
  };
  if (Object.hasOwn(templates, unit)) return fromPool(templates[unit]!, `templates[${JSON.stringify(unit)}]`);
  if (defaultTemplateName) return fromPool(defaultTemplateName, 'defaultTemplateName');
  return { name: DEFAULT_TEMPLATE_NAME, template };
}

export function controllerRef(grid: GridLike<unknown>): V1OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind: grid.kind,
    name: grid.metadata.name!,
    uid: grid.metadata.uid!,
    controller: true,
    blockOwnerDeletion: true,
  };
}

export function gridLabels(grid: GridLike<unknown>, unit?: string): Record<string, string> {
  const labels: Record<string, string> = { [LABEL_GRID]: grid.metadata.name!, [LABEL_MANAGED_BY]: MANAGED_BY };
  if (unit !== undefined) labels[LABEL_UNIT] = unit;
  return labels;
}

/** Object keys as JSON strings: the same few dozen field names come up in every object. */
const quotedKeys = new Map<string, string>();
const MAX_QUOTED_KEYS = 1_000;

function quotedKey(k: string): string {
  let q = quotedKeys.get(k);
  if (q === undefined) {
    q = JSON.stringify(k);
    if (quotedKeys.size < MAX_QUOTED_KEYS) quotedKeys.set(k, q);
  }
  return q;
}

/**
 * JSON with object keys sorted, so equal objects hash equally whatever their key order. It runs
 * over every object rendered (its render hash), so it is built by appending to one string, with
 * the quoted forms of keys kept. Such a string is a tree of pieces until something reads it
 * whole: hash it rather than keep it (compare values with `jsonEqual`).
 */
export function stableStringify(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  let out: string;
  if (Array.isArray(value)) {
    out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      const v = value[i];
      out += v === undefined ? 'null' : stableStringify(v);
    }
    return `${out}]`;
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (keys.length > 1) keys.sort();
  out = '{';
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) continue;
    if (out.length > 1) out += ',';
    out += quotedKey(k);
    out += ':';
    out += stableStringify(v);
  }
  return `${out}}`;
}

/**
 * Whether `stableStringify` gives the same text for `a` and `b`, without building either: key
 * order does not matter, a property holding undefined counts as absent, an undefined array item
 * as null, and so does a number JSON cannot hold. For the comparisons a sync makes each time
 * (statuses, labels, selectors), which find them equal far more often than not.
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return asJson(a) === asJson(b);
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i] ?? null, b[i] ?? null)) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let defined = 0;
  for (const k of Object.keys(x)) {
    const v = x[k];
    if (v === undefined) continue;
    defined++;
    if (!Object.hasOwn(y, k) || !jsonEqual(v, y[k])) return false;
  }
  for (const k of Object.keys(y)) if (y[k] !== undefined) defined--;
  return defined === 0;
}

/** A value that is not an object, as JSON has it: a number JSON cannot hold is null. */
function asJson(v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? null : v;
}

/** sha256 of `text`, hex. One call, no Hash object: it runs for every object rendered. */
export function sha256Hex(text: string): string {
  return hash('sha256', text, 'hex');
}

/** Stamps the hash of the object's desired content into its annotations and returns it. */
export function withRenderHash<T extends { metadata?: V1ObjectMeta }>(obj: T): T {
  const renderHash = sha256Hex(stableStringify(obj)).slice(0, 16);
  obj.metadata = { ...obj.metadata, annotations: { ...obj.metadata?.annotations, [ANNOTATION_RENDER_HASH]: renderHash } };
  return obj;
}

/** A deep copy of a JSON value (what grids and objects are): through JSON, some times faster than structuredClone. */
export function clone<T>(value: T): T {
  return value === undefined ? value : JSON.parse(JSON.stringify(value));
}

/**
 * `compute` run once, on the first call. Renderers hand out each unit's object this way: a sync
 * that already knows a unit's live object matches the unit's render never needs the object, so
 * a new unit costs one render per grid, not one per unit.
 */
export function once<T>(compute: () => T): () => T {
  let done = false;
  let value: T;
  return () => {
    if (!done) {
      value = compute();
      done = true;
    }
    return value;
  };
}

/**
 * `compute`, remembered per object. For what is read from cached objects: a cache replaces an
 * object when a new version arrives and never changes it, so the object is the version.
 */
export function oncePerObject<K extends object, V>(compute: (obj: K) => V): (obj: K) => V {
  const memo = new WeakMap<K, V>();
  return (obj) => {
    if (memo.has(obj)) return memo.get(obj) as V;
    const value = compute(obj);
    memo.set(obj, value);
    return value;
  };
}
