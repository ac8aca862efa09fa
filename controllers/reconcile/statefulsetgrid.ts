// StatefulSetGrid: one StatefulSet per unit. Its parts of the grid sync: rendering, the fields a
// StatefulSet cannot change in place (reported, never deleted for the user: its pods hold state),
// readiness from the StatefulSet's status, and overrides naming units that do not exist.

import type { V1StatefulSet } from '@kubernetes/client-node';
import type { Informer } from '../../kube/informer.ts';
import type { KubeObject } from '../../kube/objects.ts';
import {
  KIND_STATEFULSET_GRID,
  REASON_IMMUTABLE_FIELD_CHANGED,
  type StatefulSetGrid,
  type StatefulSetGridUnitStatus,
} from '../api/v1alpha1.ts';
import { changedImmutableFields, renderStatefulSetGrid } from '../render/statefulset.ts';
import { ObjectsByGrid } from './by-grid.ts';
import { type GridKindParts, workloadObjects } from './grid-sync.ts';
import { unknownOverridesNotice } from './overrides.ts';
import { type GridObject, STATEFULSET_GRIDS, STATEFULSETS } from './resources.ts';

type Grid = StatefulSetGrid & GridObject;

/**
 * Every pod runs the StatefulSet's latest revision. With the default RollingUpdate strategy the
 * StatefulSet controller moves currentRevision to updateRevision only once the last pod is
 * replaced, so until then updatedReplicas alone can count pods it has not yet confirmed; OnDelete
 * never moves it on its own, so there the pod count is all there is.
 */
function statefulSetRolledOut(s: V1StatefulSet | undefined): boolean {
  if (!s) return false;
  const want = s.spec?.replicas ?? 1;
  const st = s.status;
  const revisionsMatch = s.spec?.updateStrategy?.type === 'OnDelete' || !st?.updateRevision || st.currentRevision === st.updateRevision;
  return (
    (st?.observedGeneration ?? 0) >= (s.metadata?.generation ?? 0) &&
    (st?.updatedReplicas ?? 0) >= want &&
    (st?.replicas ?? 0) === want &&
    revisionsMatch
  );
}

function statefulSetReady(s: V1StatefulSet | undefined): boolean {
  return statefulSetRolledOut(s) && (s?.status?.readyReplicas ?? 0) >= (s?.spec?.replicas ?? 1);
}

export interface StatefulSetGridCaches {
  statefulSets: Informer<KubeObject>;
}

export function statefulSetGridParts(caches: StatefulSetGridCaches): GridKindParts<Grid> {
  return {
    kind: KIND_STATEFULSET_GRID,
    gridResource: STATEFULSET_GRIDS,
    objectResource: STATEFULSETS,
    objectKind: 'StatefulSet',
    objects: caches.statefulSets,
    byGrid: new ObjectsByGrid(caches.statefulSets),
    render: (grid, units) => workloadObjects(renderStatefulSetGrid(grid, units)),
    // Never 'recreate': deleting a StatefulSet would restart its pods, and which claims to keep
    // is the user's call. The unit keeps running what it runs and its error says what to do.
    replacement(_unit, live, desired) {
      const fields = changedImmutableFields(live as { spec?: Record<string, unknown> }, desired as { spec?: Record<string, unknown> });
      if (fields.length === 0) return undefined;
      const name = `${live.metadata!.namespace}/${live.metadata!.name}`;
      return {
        reason: REASON_IMMUTABLE_FIELD_CHANGED,
        message: `the template changes ${fields.join(', ')}, which a StatefulSet cannot change: delete StatefulSet ${name} (its PersistentVolumeClaims stay) to have it recreated`,
      };
    },
    unitReader: () => (r, live) => {
      const s = live as V1StatefulSet | undefined;
      const status: StatefulSetGridUnitStatus = {
        name: r.unit,
        statefulSet: r.name,
        replicas: s?.status?.replicas ?? 0,
        readyReplicas: s?.status?.readyReplicas ?? 0,
        updatedReplicas: s?.status?.updatedReplicas ?? 0,
        template: r.template,
      };
      return { status: status as unknown as Record<string, unknown>, ready: statefulSetReady(s), settled: statefulSetRolledOut(s) };
    },
    progress: {
      movingReason: 'RollingOut',
      movingWhat: 'rolling out units',
      doneMessage: 'all units rolled out',
      readyWhat: 'units ready',
    },
    async extras(view) {
      return { conditions: [unknownOverridesNotice(view)] };
    },
  };
}
