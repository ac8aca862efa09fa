// Object names for per-unit objects. Unit values are label values (A-Z a-z 0-9 _ . -, up to 63
// characters) but object names are DNS labels, so a value that is not already a short, lower-case
// DNS label is sanitised and given a hash of the raw value: `Zone_A` and `zone_a` sanitise alike
// but hash differently, and the name never depends on which other units exist (stable).

import { isDnsLabel } from '../../kube/names.ts';
import { sha256Hex } from './common.ts';

/** Longest Service name (DNS-1035 label). */
export const MAX_SERVICE_NAME = 63;
/**
 * Longest Deployment name we render. Pods are named `<deployment>-<rs hash, ≤10>-<5>`; keeping the
 * Deployment name ≤ 47 keeps pod names (and so pod hostnames) within one 63-character label.
 */
export const MAX_DEPLOYMENT_NAME = 47;
/**
 * Longest StatefulSet name we render. Its pods carry the label
 * `controller-revision-hash: <statefulset>-<hash, ≤10>`, a label value of at most 63 characters.
 */
export const MAX_STATEFULSET_NAME = 52;
/** Length of the hash suffix appended to sanitised unit values. */
export const HASH_LENGTH = 8;
/** Grid names longer than this leave no room for a unit part (checked at admission too). */
export const MAX_DEPLOYMENT_GRID_NAME = MAX_DEPLOYMENT_NAME - 1 - HASH_LENGTH - 2;
export const MAX_STATEFULSET_GRID_NAME = MAX_STATEFULSET_NAME - 1 - HASH_LENGTH - 2;
export const MAX_SERVICE_GRID_NAME = MAX_SERVICE_NAME - '-svc-'.length - HASH_LENGTH - 2;

export function shortHash(s: string): string {
  return sha256Hex(s).slice(0, HASH_LENGTH);
}

/**
 * The unit part of a name, at most `budget` characters: the raw value when it is a DNS label that
 * fits, else `<sanitised, truncated>-<hash>` (or just the hash when nothing else fits).
 */
export function unitNamePart(unit: string, budget: number): string {
  if (budget < HASH_LENGTH) throw new Error(`no room for unit ${JSON.stringify(unit)} in a name (budget ${budget})`);
  if (unit.length <= budget && isDnsLabel(unit)) return unit;
  const hash = shortHash(unit);
  const room = budget - HASH_LENGTH - 1;
  const sanitised = unit
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, Math.max(room, 0))
    .replace(/^-+|-+$/g, '');
  return sanitised ? `${sanitised}-${hash}` : hash;
}

export function unitDeploymentName(grid: string, unit: string): string {
  return `${grid}-${unitNamePart(unit, MAX_DEPLOYMENT_NAME - grid.length - 1)}`;
}

/** `<grid>-<unit part>`; its pods are `<name>-<ordinal>`, which is also their DNS hostname. */
export function unitStatefulSetName(grid: string, unit: string): string {
  return `${grid}-${unitNamePart(unit, MAX_STATEFULSET_NAME - grid.length - 1)}`;
}

export function sharedServiceName(grid: string): string {
  return `${grid}-svc`;
}

export function unitServiceName(grid: string, unit: string): string {
  const prefix = `${sharedServiceName(grid)}-`;
  return `${prefix}${unitNamePart(unit, MAX_SERVICE_NAME - prefix.length)}`;
}

/**
 * Names for a whole unit set. Distinct values get distinct names unless a value is literally
 * another value's hashed form (or two hashes collide); such units are reported, never merged.
 * The unit whose raw value is its own name part keeps the name; the others get an error.
 */
export function assignNames(units: readonly string[], nameOf: (unit: string) => string): Map<string, { name: string } | { error: string }> {
  const byName = new Map<string, string[]>();
  const result = new Map<string, { name: string } | { error: string }>();
  for (const unit of units) {
    let name: string;
    try {
      name = nameOf(unit);
    } catch (err) {
      result.set(unit, { error: (err as Error).message });
      continue;
    }
    const list = byName.get(name) ?? [];
    list.push(unit);
    byName.set(name, list);
  }
  for (const [name, owners] of byName) {
    if (owners.length === 1) {
      result.set(owners[0]!, { name });
      continue;
    }
    const plain = owners.find((u) => name.endsWith(`-${u}`));
    for (const unit of owners) {
      if (unit === plain) result.set(unit, { name });
      else
        result.set(unit, {
          error: `name ${name} collides with the name of unit(s) ${owners
            .filter((u) => u !== unit)
            .map((u) => JSON.stringify(u))
            .join(', ')}`,
        });
    }
  }
  return result;
}
