// Level-triggered sync of one ServiceGrid: the shared Service (topology-annotated) and one
// Service per unit; Services of units that are gone are deleted; status counts ready endpoints.

import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import type { Informer } from '../../kube/informer.ts';
import type { KubeObject } from '../../kube/objects.ts';
import {
  CONDITION_DEGRADED,
  CONDITION_PROGRESSING,
  REASON_APPLY_FAILED,
  REASON_CONFLICT,
  type ServiceGrid,
  type ServiceGridStatus,
  type ServiceGridUnitStatus,
} from '../api/v1alpha1.ts';
import { renderServiceGrid } from '../render/service.ts';
import { forEachConcurrently, UNIT_CONCURRENCY } from './concurrency.ts';
import {
  type ApplyOutcome,
  applyOwned,
  condition,
  degradedCondition,
  deleteOwned,
  type GridObject,
  isControlledBy,
  listUnits,
  readyCondition,
  SERVICE_GRIDS,
  SERVICES,
  type SyncContext,
  type UnitProblem,
  writeStatus,
} from './objects.ts';

export interface ServiceGridCaches {
  services: Informer<KubeObject>;
  endpointSlices: Informer<KubeObject>;
  nodes: Informer<KubeObject>;
}

type Problem = UnitProblem;

const SHARED = '';

function readyEndpointsBy(slices: V1EndpointSlice[], keyOf: (nodeName: string | undefined) => string | undefined): Map<string, number> {
  const counts = new Map<string, number>();
  for (const s of slices) {
    for (const e of s.endpoints ?? []) {
      if (e.conditions?.ready === false) continue;
      const k = keyOf(e.nodeName);
      if (k !== undefined) counts.set(k, (counts.get(k) ?? 0) + 1);
    }
  }
  return counts;
}

/** Per-unit Services cannot switch between headless and ClusterIP in place: clusterIP is immutable. */
function needsRecreate(live: KubeObject | undefined, desired: V1Service): boolean {
  if (!live) return false;
  const liveHeadless = live.spec?.clusterIP === 'None';
  const wantHeadless = desired.spec?.clusterIP === 'None';
  return liveHeadless !== wantHeadless;
}

export async function syncServiceGrid(
  ctx: SyncContext,
  grid: ServiceGrid & GridObject,
  units: string[],
  caches: ServiceGridCaches,
): Promise<{ status: ServiceGridStatus; retry: boolean }> {
  const ns = grid.metadata.namespace;
  const log = ctx.log.child({ grid: `${ns}/${grid.metadata.name}`, kind: grid.kind });
  const oldUnits = new Map((grid.status?.units ?? []).map((u) => [u.name, u]));
  const oldSharedError = (grid.status?.conditions ?? []).find((c) => c.type === CONDITION_DEGRADED && c.status === 'True')?.message ?? '';
  const { shared, units: rendered } = renderServiceGrid(grid, units);
  const problems: Problem[] = [];
  let retry = false;

  const record = async (outcome: ApplyOutcome, unit: string, name: string): Promise<void> => {
    const what = unit === SHARED ? `shared Service ${name}` : `Service ${name} for unit ${JSON.stringify(unit)}`;
    if (outcome.kind === 'created' || outcome.kind === 'updated') {
      log.info({ unit: unit || undefined, service: name }, `${outcome.kind} service`);
      await ctx.recorder.record(
        grid,
        'Normal',
        outcome.kind === 'created' ? 'Created' : 'Updated',
        outcome.kind === 'created' ? 'Create' : 'Update',
        `${outcome.kind} ${what}`,
      );
    } else if (outcome.kind === 'conflict') {
      problems.push({ unit, reason: REASON_CONFLICT, message: outcome.message });
    } else if (outcome.kind === 'failed') {
      retry ||= outcome.retry;
      problems.push({ unit, reason: REASON_APPLY_FAILED, message: outcome.message });
    }
  };

  await record(await applyOwned(ctx, SERVICES, caches.services, shared as KubeObject, grid), SHARED, shared.metadata!.name!);

  await forEachConcurrently(rendered, UNIT_CONCURRENCY, async (r) => {
    if (r.error) {
      problems.push({ unit: r.unit, ...r.error });
      return;
    }
    if (!r.service) return;
    const live = caches.services.get(ns, r.name);
    if (live && isControlledBy(live, grid) && needsRecreate(live, r.service)) {
      log.info({ unit: r.unit, service: r.name }, 'recreating unit service to switch headless/ClusterIP');
      await deleteOwned(ctx, SERVICES, live);
    }
    await record(await applyOwned(ctx, SERVICES, caches.services, r.service as KubeObject, grid), r.unit, r.name);
  });

  const keep = new Set([shared.metadata!.name!, ...rendered.map((r) => r.name).filter(Boolean)]);
  for (const s of caches.services.list(ns)) {
    if (!isControlledBy(s, grid) || keep.has(s.metadata!.name!)) continue;
    if (await deleteOwned(ctx, SERVICES, s)) {
      const unit = s.metadata?.labels?.['servicegroup.io/unit'] ?? '';
      log.info({ unit, service: s.metadata!.name }, 'deleted service of a unit that is gone');
      await ctx.recorder.record(grid, 'Normal', 'Deleted', 'Delete', `deleted Service ${s.metadata!.name} of unit ${JSON.stringify(unit)}`);
    }
  }

  for (const p of problems) {
    const known = p.unit === SHARED ? oldSharedError.includes(p.message) : oldUnits.get(p.unit)?.error === `${p.reason}: ${p.message}`;
    if (known) continue;
    log.warn({ unit: p.unit || undefined, reason: p.reason, err: p.message }, 'service grid problem');
    await ctx.recorder.record(
      grid,
      'Warning',
      p.reason,
      'Reconcile',
      p.unit === SHARED ? p.message : `unit ${JSON.stringify(p.unit)}: ${p.message}`,
    );
  }

  // Ready endpoints per unit: from the unit's own Service when there is one, else from the shared
  // Service's endpoints by the unit of their node.
  const slicesOf = (service: string) =>
    caches.endpointSlices
      .list(ns)
      .filter((s) => s.metadata?.labels?.['kubernetes.io/service-name'] === service) as unknown as V1EndpointSlice[];
  const unitOfNode = new Map<string, string>();
  for (const n of caches.nodes.list() as V1Node[]) {
    const v = n.metadata?.labels?.[grid.spec.gridUniqKey];
    if (v) unitOfNode.set(n.metadata!.name!, v);
  }
  const sharedCounts = readyEndpointsBy(slicesOf(shared.metadata!.name!), (node) => (node ? unitOfNode.get(node) : undefined));
  const problemByUnit = new Map(problems.map((p) => [p.unit, p]));
  const unitStatus: ServiceGridUnitStatus[] = rendered.map((r) => {
    const ready = r.service ? (readyEndpointsBy(slicesOf(r.name), () => SHARED).get(SHARED) ?? 0) : (sharedCounts.get(r.unit) ?? 0);
    const s: ServiceGridUnitStatus = { name: r.unit, service: r.service ? r.name : '', readyEndpoints: ready, template: r.template };
    const p = problemByUnit.get(r.unit);
    if (p) s.error = `${p.reason}: ${p.message}`;
    return s;
  });
  const total = unitStatus.length;
  const readyList = unitStatus.filter((u) => !u.error && u.readyEndpoints > 0);
  const waiting = unitStatus.filter((u) => !u.error && u.readyEndpoints === 0).map((u) => u.name);
  const gen = grid.metadata.generation;
  const old = grid.status?.conditions;
  const status: ServiceGridStatus = {
    observedGeneration: gen,
    service: shared.metadata!.name!,
    totalUnits: total,
    readyUnits: readyList.length,
    units: unitStatus,
    conditions: [
      readyCondition(
        old,
        {
          gridUniqKey: grid.spec.gridUniqKey,
          total,
          ready: readyList.length,
          gridWideOk: !problemByUnit.has(SHARED),
          what: 'units have ready endpoints',
        },
        gen,
      ),
      condition(
        old,
        CONDITION_PROGRESSING,
        waiting.length > 0,
        waiting.length > 0 ? 'WaitingForEndpoints' : 'Complete',
        waiting.length > 0 ? `no ready endpoint yet in units ${listUnits(waiting)}` : 'every unit has ready endpoints',
        gen,
      ),
      degradedCondition(old, problems, gen),
    ],
  };
  await writeStatus(ctx, SERVICE_GRIDS, grid, status as Record<string, unknown>);
  return { status, retry };
}
