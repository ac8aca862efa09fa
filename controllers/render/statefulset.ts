// StatefulSetGrid rendering: grid + unit set → one desired StatefulSet `<grid>-<unit>` per unit,
// pinned to the unit, or a per-unit error: the same pipeline as a DeploymentGrid's. Each unit's
// StatefulSet keeps the template's volumeClaimTemplates, so every unit gets its own claims
// (`<claim>-<grid>-<unit>-<i>`), and its `serviceName`, the headless Service publishing the pods'
// DNS names. Pure: no I/O.

import type { V1StatefulSet, V1StatefulSetSpec } from '@kubernetes/client-node';
import type { StatefulSetGrid } from '../api/v1alpha1.ts';
import { type RenderedUnitWorkload, renderWorkloadGrid } from './deployment.ts';
import { unitStatefulSetName } from './names.ts';

export type RenderedUnitStatefulSet = RenderedUnitWorkload<V1StatefulSet>;

export function renderStatefulSetGrid(grid: StatefulSetGrid, units: readonly string[]): RenderedUnitStatefulSet[] {
  return renderWorkloadGrid<V1StatefulSetSpec, V1StatefulSet>('StatefulSet', grid, units, unitStatefulSetName);
}
