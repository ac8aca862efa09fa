// The I/O both grid reconcilers share: apply an owned object unless it already matches, detect
// same-name objects the grid does not control, delete leftovers, post events, write status.

import type { V1Condition } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { ApiError, isStatus, type KubeClient } from '../../kube/client.ts';
import type { Informer } from '../../kube/informer.ts';
import { type GroupVersionResource, type KubeObject, resourcePath } from '../../kube/objects.ts';
import {
  ANNOTATION_RENDER_HASH,
  API_VERSION,
  CONDITION_DEGRADED,
  CONDITION_READY,
  GROUP,
  REASON_CONFLICT,
  VERSION,
} from '../api/v1alpha1.ts';
import { stableStringify } from '../render/common.ts';
import type { DriftDetector } from './drift.ts';

export const FIELD_MANAGER = 'servicegroup-controller';

export type Resource = GroupVersionResource;

export const DEPLOYMENTS: Resource = { group: 'apps', version: 'v1', resource: 'deployments' };
export const SERVICES: Resource = { group: '', version: 'v1', resource: 'services' };
export const ENDPOINT_SLICES: Resource = { group: 'discovery.k8s.io', version: 'v1', resource: 'endpointslices' };
export const NODES: Resource = { group: '', version: 'v1', resource: 'nodes' };
export const DEPLOYMENT_GRIDS: Resource = { group: GROUP, version: VERSION, resource: 'deploymentgrids' };
export const SERVICE_GRIDS: Resource = { group: GROUP, version: VERSION, resource: 'servicegrids' };

export interface GridObject extends KubeObject {
  kind: string;
  metadata: { name: string; namespace: string; uid: string; generation?: number; [k: string]: any };
  status?: { conditions?: V1Condition[]; [k: string]: any };
}

export function controllerUid(obj: KubeObject): string | undefined {
  return (obj.metadata?.ownerReferences as { controller?: boolean; uid: string }[] | undefined)?.find((r) => r.controller)?.uid;
}

export function isControlledBy(obj: KubeObject, grid: GridObject): boolean {
  return controllerUid(obj) === grid.metadata.uid;
}

export type ApplyOutcome =
  | { kind: 'unchanged' | 'created' | 'updated'; live: KubeObject }
  | { kind: 'conflict'; message: string }
  | { kind: 'failed'; message: string; retry: boolean };

/** What a grid sync needs from the controller. */
export interface SyncContext {
  client: KubeClient;
  log: Logger;
  recorder: EventRecorder;
  drift: DriftDetector;
}

/**
 * Makes the live object match `desired` (server-side apply as FIELD_MANAGER, force: the grid owns
 * the fields it renders), unless the live object carries the same render hash already. A
 * same-name object the grid does not control is reported as a conflict and left untouched.
 */
export async function applyOwned(
  ctx: SyncContext,
  resource: Resource,
  cache: Informer<KubeObject>,
  desired: KubeObject,
  grid: GridObject,
): Promise<ApplyOutcome> {
  const ns = desired.metadata!.namespace!;
  const name = desired.metadata!.name!;
  const path = resourcePath(resource, ns, name);
  let live: KubeObject | undefined = cache.get(ns, name);
  if (!live || !isControlledBy(live, grid)) {
    // The cache only holds labelled objects and may lag our own writes: ask the apiserver.
    try {
      live = await ctx.client.get<KubeObject>(path);
    } catch (err) {
      if (!isStatus(err, 404)) return { kind: 'failed', message: (err as Error).message, retry: true };
      live = undefined;
    }
  }
  if (live && !isControlledBy(live, grid)) {
    const owner = controllerUid(live);
    const who = owner ? `is controlled by another owner (uid ${owner})` : 'exists and is not controlled by this grid';
    return { kind: 'conflict', message: `${desired.kind} ${ns}/${name} ${who}` };
  }
  const hash = desired.metadata?.annotations?.[ANNOTATION_RENDER_HASH];
  const sameRender = !!live && !!hash && live.metadata?.annotations?.[ANNOTATION_RENDER_HASH] === hash;
  if (sameRender && !ctx.drift.drifted(desired, live!)) return { kind: 'unchanged', live: live! };
  if (sameRender) ctx.log.info({ object: `${ns}/${name}`, kind: desired.kind }, 'managed fields changed by another actor; re-applying');
  try {
    const applied = await ctx.client.apply<KubeObject>(path, desired, FIELD_MANAGER, true);
    ctx.drift.recordApplied(desired, applied);
    return { kind: live ? 'updated' : 'created', live: applied };
  } catch (err) {
    const retry = !(err instanceof ApiError) || err.statusCode >= 500 || err.statusCode === 409 || err.statusCode === 429;
    return { kind: 'failed', message: (err as Error).message, retry };
  }
}

/** Deletes an owned object, only if it is still the one we saw (uid precondition). */
export async function deleteOwned(ctx: SyncContext, resource: Resource, obj: KubeObject): Promise<boolean> {
  const path = resourcePath(resource, obj.metadata!.namespace, obj.metadata!.name);
  try {
    await ctx.client.request('DELETE', path, {
      body: { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background', preconditions: { uid: obj.metadata!.uid } },
    });
    return true;
  } catch (err) {
    if (isStatus(err, 404) || isStatus(err, 409)) return false;
    throw err;
  }
}

/** Posts events.k8s.io/v1 Events about a grid. Failures are logged, never fatal. */
export class EventRecorder {
  private readonly client: KubeClient;
  private readonly log: Logger;
  private readonly instance: string;
  constructor(client: KubeClient, log: Logger, instance: string) {
    this.client = client;
    this.log = log;
    this.instance = instance;
  }

  async record(grid: GridObject, type: 'Normal' | 'Warning', reason: string, action: string, note: string): Promise<void> {
    const now = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
    const ns = grid.metadata.namespace;
    try {
      await this.client.request('POST', `/apis/events.k8s.io/v1/namespaces/${ns}/events`, {
        body: {
          apiVersion: 'events.k8s.io/v1',
          kind: 'Event',
          // Named like client-go's recorder: <object>.<unique hex>.
          metadata: { name: `${grid.metadata.name}.${(Date.now() * 4096 + Math.floor(Math.random() * 4096)).toString(16)}`, namespace: ns },
          regarding: { apiVersion: API_VERSION, kind: grid.kind, name: grid.metadata.name, namespace: ns, uid: grid.metadata.uid },
          reason,
          action,
          note: note.slice(0, 1024),
          type,
          eventTime: now,
          reportingController: `${GROUP}/${FIELD_MANAGER}`,
          reportingInstance: this.instance,
        },
      });
    } catch (err) {
      this.log.warn({ err, grid: `${ns}/${grid.metadata.name}`, reason }, 'could not record event');
    }
  }
}

/** A condition that keeps its lastTransitionTime while its status does not change. */
export function condition(
  old: V1Condition[] | undefined,
  type: string,
  status: boolean,
  reason: string,
  message: string,
  generation: number | undefined,
): V1Condition {
  const s = status ? 'True' : 'False';
  const prev = old?.find((c) => c.type === type);
  const lastTransitionTime =
    prev && prev.status === s ? prev.lastTransitionTime : (new Date().toISOString().replace(/\.\d{3}Z$/, 'Z') as unknown as Date);
  return { type, status: s, reason, message, lastTransitionTime, observedGeneration: generation };
}

/**
 * `Ready`, the same for both grid kinds: false with reason NoUnits while no node carries the key,
 * else true when every unit is ready (and nothing grid-wide is wrong).
 */
export function readyCondition(
  old: V1Condition[] | undefined,
  grid: { gridUniqKey: string; total: number; ready: number; gridWideOk?: boolean; what: string },
  generation: number | undefined,
): V1Condition {
  if (grid.total === 0) return condition(old, CONDITION_READY, false, 'NoUnits', `no node carries label ${grid.gridUniqKey}`, generation);
  const all = grid.ready === grid.total;
  return condition(
    old,
    CONDITION_READY,
    all && (grid.gridWideOk ?? true),
    all ? 'AllUnitsReady' : 'UnitsNotReady',
    `${grid.ready}/${grid.total} ${grid.what}`,
    generation,
  );
}

/** A problem of one unit; unit '' is the grid as a whole (e.g. a ServiceGrid's shared Service). */
export interface UnitProblem {
  unit: string;
  reason: string;
  message: string;
}

/**
 * `Degraded`, the same for both grid kinds: true while any unit has a problem; the reason is a
 * Conflict if there is one (the case an operator must act on), else the first problem's.
 */
export function degradedCondition(old: V1Condition[] | undefined, problems: UnitProblem[], generation: number | undefined): V1Condition {
  const degraded = problems.length > 0;
  const reason = (problems.find((p) => p.reason === REASON_CONFLICT) ?? problems[0])?.reason ?? 'AsExpected';
  const message = problems
    .slice(0, 5)
    .map((p) => (p.unit === '' ? `${p.reason}: ${p.message}` : `unit ${JSON.stringify(p.unit)}: ${p.reason}: ${p.message}`))
    .join('; ');
  return condition(old, CONDITION_DEGRADED, degraded, reason, message, generation);
}

/** Writes the grid's status (merge patch on the status subresource) when it differs. */
export async function writeStatus(
  ctx: SyncContext,
  resource: Resource,
  grid: GridObject,
  status: Record<string, unknown>,
): Promise<boolean> {
  if (stableStringify(grid.status ?? {}) === stableStringify(status)) return false;
  const path = resourcePath(resource, grid.metadata.namespace, grid.metadata.name, 'status');
  // Null out fields that disappeared so the merge patch really replaces the status.
  const patch: Record<string, unknown> = {};
  for (const k of Object.keys(grid.status ?? {})) patch[k] = null;
  Object.assign(patch, status);
  await ctx.client.mergePatch(path, { status: patch }, FIELD_MANAGER);
  return true;
}

/** Short text for a list of units in messages. */
export function listUnits(units: string[], max = 5): string {
  const shown = units
    .slice(0, max)
    .map((u) => JSON.stringify(u))
    .join(', ');
  return units.length > max ? `${shown} and ${units.length - max} more` : shown;
}
