// DeploymentGrid: one Deployment per unit. Its parts of the grid sync: rendering, the selector
// check (a Deployment's selector is immutable), readiness from the Deployment's status, overrides
// naming units that do not exist, and pods left in another unit by a relabel.

import type { V1Deployment } from '@kubernetes/client-node';
import type { Informer } from '../../kube/informer.ts';
import type { KubeObject } from '../../kube/objects.ts';
import {
  ANNOTATION_RENDER_HASH,
  CONDITION_MISPLACED_PODS,
  type DeploymentGrid,
  type DeploymentGridUnitStatus,
  KIND_DEPLOYMENT_GRID,
  REASON_SELECTOR_CHANGED,
} from '../api/v1alpha1.ts';
import { jsonEqual } from '../render/common.ts';
import { renderDeploymentGrid } from '../render/deployment.ts';
import { gateRollout, type UnitHealth } from '../rollout/gate.ts';
import { ObjectsByGrid } from './by-grid.ts';
import { condition, listSome } from './conditions.ts';
import { type Evictor, findMisplacedPods, type MisplacedPod } from './eviction.ts';
import { type GridKindParts, type Notice, type SyncView, workloadObjects } from './grid-sync.ts';
import { unknownOverridesNotice } from './overrides.ts';
import { DEPLOYMENT_GRIDS, DEPLOYMENTS, type GridObject } from './resources.ts';

type Grid = DeploymentGrid & GridObject;

/** How soon to look again at misplaced pods whose eviction had to wait. */
const EVICTION_RETRY_MS = 5_000;

function deploymentReady(d: V1Deployment | undefined): boolean {
  if (!d) return false;
  const want = d.spec?.replicas ?? 1;
  const st = d.status ?? {};
  return (
    (st.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) &&
    (st.updatedReplicas ?? 0) >= want &&
    (st.readyReplicas ?? 0) >= want &&
    (st.replicas ?? 0) === want
  );
}

/** A unit's state for a rollout: done when rolled out and available; failed past its progress deadline. */
function deploymentHealth(live: KubeObject): UnitHealth {
  const d = live as V1Deployment;
  const want = d.spec?.replicas ?? 1;
  const stuck = d.status?.conditions?.find((c) => c.type === 'Progressing' && c.reason === 'ProgressDeadlineExceeded');
  return {
    done: deploymentRolledOut(d) && (d.status?.availableReplicas ?? 0) >= want,
    failed: !!stuck,
    failure: stuck ? `ProgressDeadlineExceeded: ${stuck.message ?? 'the Deployment made no progress within its deadline'}` : undefined,
  };
}

function deploymentRolledOut(d: V1Deployment | undefined): boolean {
  if (!d) return false;
  const want = d.spec?.replicas ?? 1;
  const st = d.status ?? {};
  return (st.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) && (st.updatedReplicas ?? 0) >= want && (st.replicas ?? 0) === want;
}

export interface DeploymentGridCaches {
  deployments: Informer<KubeObject>;
  pods: Informer<KubeObject>;
  nodes: Informer<KubeObject>;
}

export function deploymentGridParts(caches: DeploymentGridCaches, evictor: Evictor | undefined): GridKindParts<Grid> {
  // A grid's pods: a sync looks for misplaced pods among its own, not among every pod of the namespace.
  const podsByGrid = new ObjectsByGrid(caches.pods);
  return {
    kind: KIND_DEPLOYMENT_GRID,
    gridResource: DEPLOYMENT_GRIDS,
    objectResource: DEPLOYMENTS,
    objectKind: 'Deployment',
    objects: caches.deployments,
    byGrid: new ObjectsByGrid(caches.deployments),
    render: (grid, units) => workloadObjects(renderDeploymentGrid(grid, units)),
    replacement(_unit, live, desired) {
      if (jsonEqual(live.spec?.selector ?? {}, desired.spec?.selector ?? {})) return undefined;
      const name = `${live.metadata!.namespace}/${live.metadata!.name}`;
      return {
        reason: REASON_SELECTOR_CHANGED,
        message: `the template's selector changed and a Deployment's selector is immutable: delete Deployment ${name} to have it recreated`,
      };
    },
    gate: (grid, rendered, current) =>
      gateRollout(grid, rendered, current, deploymentHealth, (type, status, reason, message) =>
        condition(grid.status?.conditions, type, status, reason, message, grid.metadata.generation),
      ),
    unitReader: () => (r, live) => {
      const d = live as V1Deployment | undefined;
      const status: DeploymentGridUnitStatus = {
        name: r.unit,
        deployment: r.name,
        replicas: d?.status?.replicas ?? 0,
        readyReplicas: d?.status?.readyReplicas ?? 0,
        updatedReplicas: d?.status?.updatedReplicas ?? 0,
        template: r.template,
        templateHash: d?.metadata?.annotations?.[ANNOTATION_RENDER_HASH],
      };
      return { status: status as unknown as Record<string, unknown>, ready: deploymentReady(d), settled: deploymentRolledOut(d) };
    },
    progress: {
      movingReason: 'RollingOut',
      movingWhat: 'rolling out units',
      doneMessage: 'all units rolled out',
      readyWhat: 'units ready',
    },
    async extras(view) {
      const misplaced = await misplacedPods(view, caches, podsByGrid, evictor);
      return { conditions: [unknownOverridesNotice(view), misplaced.notice], requeueAfterMs: misplaced.requeueAfterMs };
    },
  };
}

async function misplacedPods(
  view: SyncView<Grid>,
  caches: DeploymentGridCaches,
  podsByGrid: ObjectsByGrid,
  evictor: Evictor | undefined,
): Promise<{ notice: Notice; requeueAfterMs?: number }> {
  const { grid } = view;
  const ns = grid.metadata.namespace;
  const deploymentOfUnit = new Map(view.rendered.filter((r) => r.name && view.live.has(r.name)).map((r) => [r.unit, r.name]));
  const pods = podsByGrid
    .of(ns, grid.metadata.name)
    .map((name) => caches.pods.get(ns, name))
    .filter((p): p is KubeObject => p !== undefined);
  const misplaced = findMisplacedPods(
    pods,
    deploymentOfUnit,
    grid.spec.gridUniqKey,
    (node) => caches.nodes.get(undefined, node)?.metadata?.labels as Record<string, string> | undefined,
  );
  let waiting = false;
  if (evictor) {
    for (const m of misplaced) {
      if (m.terminating) continue;
      const result = await evictor.evict(m.pod);
      if (result === 'evicted') {
        view.changes.add('Evicted', `${m.name} on ${m.node} (unit ${JSON.stringify(m.unit)})`);
        view.log.info({ pod: m.name, node: m.node, unit: m.unit, nodeUnit: m.nodeUnit }, 'evicted a pod running outside its unit');
      } else if (result === 'blocked' || result === 'limited') {
        waiting = true;
      }
    }
  }
  const reason = misplaced.length === 0 ? 'AsExpected' : !evictor ? 'EvictionDisabled' : waiting ? 'EvictionPending' : 'Evicting';
  const message =
    misplaced.length === 0
      ? 'every pod runs in its own unit'
      : `${misplaced.length} pod${misplaced.length === 1 ? ' runs' : 's run'} outside ${misplaced.length === 1 ? 'its' : 'their'} unit: ${listSome(misplaced.map(describe), 5)}`;
  return {
    notice: {
      condition: condition(
        grid.status?.conditions,
        CONDITION_MISPLACED_PODS,
        misplaced.length > 0,
        reason,
        message,
        grid.metadata.generation,
      ),
      eventType: 'Warning',
    },
    requeueAfterMs: waiting ? Math.max(EVICTION_RETRY_MS, evictor?.waitMs() ?? 0) : undefined,
  };
}

function describe(m: MisplacedPod): string {
  const where = m.nodeUnit === undefined ? 'a node without the unit label' : `unit ${JSON.stringify(m.nodeUnit)}`;
  return `${m.name} of unit ${JSON.stringify(m.unit)} on ${m.node} (${where})${m.terminating ? ', terminating' : ''}`;
}
