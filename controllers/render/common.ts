// Pieces shared by both grid renderers: template choice per unit, owner references, labels and
// the render hash that lets reconcile skip writes when nothing changed.

import { createHash } from 'node:crypto';
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

/**
 * JSON with object keys sorted, so equal objects hash equally whatever their key order. Plain
 * loops (it runs over every rendered object, live object and status a sync compares), and each
 * level joined from an array: the result is a flat string. Built with `+=` it would be a tree of
 * string pieces, kept whole wherever the result is remembered (drift fingerprints, statuses).
 */
export function stableStringify(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  const parts: string[] = [];
  if (Array.isArray(value)) {
    for (const v of value) parts.push(v === undefined ? 'null' : stableStringify(v));
    return `[${parts.join(',')}]`;
  }
  const obj = value as Record<string, unknown>;
  for (const k of Object.keys(obj).sort()) {
    const v = obj[k];
    if (v !== undefined) parts.push(`${JSON.stringify(k)}:${stableStringify(v)}`);
  }
  return `{${parts.join(',')}}`;
}

/** Stamps the hash of the object's desired content into its annotations and returns it. */
export function withRenderHash<T extends { metadata?: V1ObjectMeta }>(obj: T): T {
  const hash = createHash('sha256').update(stableStringify(obj)).digest('hex').slice(0, 16);
  obj.metadata = { ...obj.metadata, annotations: { ...obj.metadata?.annotations, [ANNOTATION_RENDER_HASH]: hash } };
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
