// StatefulSetGrid rendering: grid + unit set → one desired StatefulSet `<grid>-<unit>` per unit,
// pinned to the unit, or a per-unit error: the same pipeline as a DeploymentGrid's. Each unit's
// StatefulSet keeps the template's volumeClaimTemplates, so every unit gets its own claims
// (`<claim>-<grid>-<unit>-<i>`), and its `serviceName`, the headless Service publishing the pods'
// DNS names. Pure: no I/O.

import type { V1StatefulSet, V1StatefulSetSpec } from '@kubernetes/client-node';
import type { StatefulSetGrid } from '../api/v1alpha1.ts';
import { jsonEqual } from './common.ts';
import { type RenderedUnitWorkload, renderWorkloadGrid } from './deployment.ts';
import { unitStatefulSetName } from './names.ts';

export type RenderedUnitStatefulSet = RenderedUnitWorkload<V1StatefulSet>;

export function renderStatefulSetGrid(grid: StatefulSetGrid, units: readonly string[]): RenderedUnitStatefulSet[] {
  return renderWorkloadGrid<V1StatefulSetSpec, V1StatefulSet>('StatefulSet', grid, units, unitStatefulSetName);
}

/** StatefulSet spec fields the apiserver refuses to change after creation (that a grid renders). */
export const IMMUTABLE_STATEFULSET_FIELDS = ['selector', 'serviceName', 'volumeClaimTemplates', 'podManagementPolicy'] as const;

type SpecOf = { spec?: Record<string, unknown> };

/**
 * The immutable fields whose rendered value differs from the live StatefulSet's. Values the
 * apiserver fills in are compared as it fills them: podManagementPolicy defaults to OrderedReady,
 * and claims by name, access modes and class (the apiserver adds status and volumeMode, and writes
 * sizes in canonical form; a size change is refused by the apiserver and reported as such).
 */
export function changedImmutableFields(live: SpecOf, desired: SpecOf): string[] {
  const norm = (field: string, v: unknown): unknown => {
    if (field === 'podManagementPolicy') return v ?? 'OrderedReady';
    if (field === 'volumeClaimTemplates')
      return ((v as { metadata?: { name?: string }; spec?: { accessModes?: unknown; storageClassName?: unknown } }[]) ?? []).map((c) => ({
        name: c.metadata?.name,
        accessModes: c.spec?.accessModes,
        storageClassName: c.spec?.storageClassName,
      }));
    return v ?? null;
  };
  return IMMUTABLE_STATEFULSET_FIELDS.filter((f) => !jsonEqual(norm(f, live.spec?.[f]), norm(f, desired.spec?.[f])));
}
