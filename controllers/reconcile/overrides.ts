// The notice both workload grid kinds give when spec.overrides names units no node carries: reported
// (a condition and one Normal event), never a reason to degrade the grid, since such an override
// applies as soon as a node carries the unit.
import { CONDITION_UNKNOWN_OVERRIDE_UNITS, type DeploymentGrid } from '../api/v1alpha1.ts';
import { unknownOverrideUnits } from '../render/deployment.ts';
import { condition, listSome } from './conditions.ts';
import type { Notice, SyncView } from './grid-sync.ts';
import type { GridObject } from './resources.ts';

export function unknownOverridesNotice(view: SyncView<GridObject & { spec: Pick<DeploymentGrid['spec'], 'overrides'> }>): Notice {
  const { grid, units } = view;
  const unknown = unknownOverrideUnits(grid, units);
  const message =
    unknown.length === 0
      ? 'every unit named in overrides exists'
      : `overrides name units no node carries (they apply once one does): ${listSome(
          unknown.map((u) => `${JSON.stringify(u.unit)} in overrides[${u.overrides.join('], [')}]`),
          10,
        )}`;
  return {
    condition: condition(
      grid.status?.conditions,
      CONDITION_UNKNOWN_OVERRIDE_UNITS,
      unknown.length > 0,
      unknown.length > 0 ? 'UnitsNotFound' : 'AsExpected',
      message,
      grid.metadata.generation,
    ),
    eventType: 'Normal',
  };
}
