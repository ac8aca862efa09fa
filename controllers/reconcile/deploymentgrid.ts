// Level-triggered sync of one DeploymentGrid: render from the grid and the current unit set,
// apply what differs, delete Deployments of units that are gone, then write status.

import type { V1Deployment } from '@kubernetes/client-node';
import type { Informer } from '../../kube/informer.ts';
import type { KubeObject } from '../../kube/objects.ts';
import {
  CONDITION_PROGRESSING,
  type DeploymentGrid,
  type DeploymentGridStatus,
  type DeploymentGridUnitStatus,
  REASON_APPLY_FAILED,
  REASON_CONFLICT,
} from '../api/v1alpha1.ts';
import { renderDeploymentGrid } from '../render/deployment.ts';
import { forEachConcurrently, UNIT_CONCURRENCY } from './concurrency.ts';
import {
  applyOwned,
  condition,
  DEPLOYMENT_GRIDS,
  DEPLOYMENTS,
  degradedCondition,
  deleteOwned,
  type GridObject,
  isControlledBy,
  listUnits,
  readyCondition,
  type SyncContext,
  type UnitProblem,
  writeStatus,
} from './objects.ts';

export interface DeploymentGridSyncResult {
  status: DeploymentGridStatus;
  /** A retriable failure happened: sync again later with backoff. */
  retry: boolean;
}

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

function deploymentRolledOut(d: V1Deployment | undefined): boolean {
  if (!d) return false;
  const want = d.spec?.replicas ?? 1;
  const st = d.status ?? {};
  return (st.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) && (st.updatedReplicas ?? 0) >= want && (st.replicas ?? 0) === want;
}

export async function syncDeploymentGrid(
  ctx: SyncContext,
  grid: DeploymentGrid & GridObject,
  units: string[],
  deployments: Informer<KubeObject>,
): Promise<DeploymentGridSyncResult> {
  const gridKey = `${grid.metadata.namespace}/${grid.metadata.name}`;
  const log = ctx.log.child({ grid: gridKey, kind: grid.kind });
  const oldUnits = new Map((grid.status?.units ?? []).map((u) => [u.name, u]));
  const rendered = renderDeploymentGrid(grid, units);
  const problems: UnitProblem[] = [];
  const liveByUnit = new Map<string, V1Deployment>();
  let retry = false;

  await forEachConcurrently(rendered, UNIT_CONCURRENCY, async (r) => {
    if (r.error) {
      problems.push({ unit: r.unit, ...r.error });
      const live = r.name ? deployments.get(grid.metadata.namespace, r.name) : undefined;
      if (live && isControlledBy(live, grid)) liveByUnit.set(r.unit, live as V1Deployment);
      return;
    }
    const outcome = await applyOwned(ctx, DEPLOYMENTS, deployments, r.deployment as KubeObject, grid);
    const ulog = log.child({ unit: r.unit, deployment: r.name });
    switch (outcome.kind) {
      case 'unchanged':
        liveByUnit.set(r.unit, outcome.live as V1Deployment);
        break;
      case 'created':
      case 'updated':
        liveByUnit.set(r.unit, outcome.live as V1Deployment);
        ulog.info(`${outcome.kind} deployment`);
        await ctx.recorder.record(
          grid,
          'Normal',
          outcome.kind === 'created' ? 'Created' : 'Updated',
          outcome.kind === 'created' ? 'Create' : 'Update',
          `${outcome.kind} Deployment ${r.name} for unit ${JSON.stringify(r.unit)} (template ${r.template})`,
        );
        break;
      case 'conflict':
        problems.push({ unit: r.unit, reason: REASON_CONFLICT, message: outcome.message });
        break;
      case 'failed':
        retry ||= outcome.retry;
        problems.push({ unit: r.unit, reason: REASON_APPLY_FAILED, message: outcome.message });
        ulog.warn({ err: outcome.message }, 'apply failed');
        break;
    }
  });

  // Units that are gone lose their Deployment; a failed unit keeps whatever it had.
  const keep = new Set(rendered.map((r) => r.name).filter(Boolean));
  for (const d of deployments.list(grid.metadata.namespace)) {
    if (!isControlledBy(d, grid) || keep.has(d.metadata!.name!)) continue;
    if (await deleteOwned(ctx, DEPLOYMENTS, d)) {
      const unit = d.metadata?.labels?.['servicegroup.io/unit'] ?? '';
      log.info({ unit, deployment: d.metadata!.name }, 'deleted deployment of a unit that is gone');
      await ctx.recorder.record(
        grid,
        'Normal',
        'Deleted',
        'Delete',
        `deleted Deployment ${d.metadata!.name} of unit ${JSON.stringify(unit)}, which no node carries any more`,
      );
    }
  }

  // Events for problems that are new (level-triggered: a standing problem is not re-announced).
  for (const p of problems) {
    if (oldUnits.get(p.unit)?.error === `${p.reason}: ${p.message}`) continue;
    log.warn({ unit: p.unit, reason: p.reason, err: p.message }, 'unit failed');
    await ctx.recorder.record(grid, 'Warning', p.reason, 'Reconcile', `unit ${JSON.stringify(p.unit)}: ${p.message}`);
  }

  const problemByUnit = new Map(problems.map((p) => [p.unit, p]));
  const unitStatus: DeploymentGridUnitStatus[] = rendered.map((r) => {
    const d = liveByUnit.get(r.unit);
    const p = problemByUnit.get(r.unit);
    const s: DeploymentGridUnitStatus = {
      name: r.unit,
      deployment: r.name,
      replicas: d?.status?.replicas ?? 0,
      readyReplicas: d?.status?.readyReplicas ?? 0,
      updatedReplicas: d?.status?.updatedReplicas ?? 0,
      template: r.template,
    };
    if (p) s.error = `${p.reason}: ${p.message}`;
    return s;
  });
  const readyUnits = rendered.filter((r) => !problemByUnit.has(r.unit) && deploymentReady(liveByUnit.get(r.unit))).length;
  const rolling = rendered.filter((r) => !problemByUnit.has(r.unit) && !deploymentRolledOut(liveByUnit.get(r.unit))).map((r) => r.unit);
  const gen = grid.metadata.generation;
  const old = grid.status?.conditions;
  const total = rendered.length;
  const status: DeploymentGridStatus = {
    observedGeneration: gen,
    totalUnits: total,
    readyUnits,
    units: unitStatus,
    conditions: [
      readyCondition(old, { gridUniqKey: grid.spec.gridUniqKey, total, ready: readyUnits, what: 'units ready' }, gen),
      condition(
        old,
        CONDITION_PROGRESSING,
        rolling.length > 0,
        rolling.length > 0 ? 'RollingOut' : 'Complete',
        rolling.length > 0 ? `rolling out units ${listUnits(rolling)}` : 'all units rolled out',
        gen,
      ),
      degradedCondition(old, problems, gen),
    ],
  };
  if (await writeStatus(ctx, DEPLOYMENT_GRIDS, grid, status as Record<string, unknown>)) log.debug({ readyUnits, total }, 'status written');
  return { status, retry };
}
