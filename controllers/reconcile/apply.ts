// Writes of rendered objects. One request per object in the common cases: the labelled cache
// says whether the grid already owns the object, and a create carries a fresh metadata.uid, which
// the apiserver replaces on create but refuses (uid is immutable) when an object of that name
// already exists, so a server-side apply can never take over an object it did not expect. Only
// such a refusal, or a name known to be taken, costs a GET to see who holds the name.

import { randomUUID } from 'node:crypto';
import { ANNOTATION_RENDER_HASH } from '../api/v1alpha1.ts';
import { ApiError, isStatus, type KubeClient, resourcePath } from '../kube/client.ts';
import type { KubeObject } from '../kube/informer.ts';
import type { DriftDetector } from './drift.ts';
import { controllerUid, type GridObject, isControlledBy, type Resource } from './resources.ts';

export const FIELD_MANAGER = 'servicegroup-controller';

export type ApplyOutcome =
  | { kind: 'unchanged' | 'created' | 'updated'; live: KubeObject }
  /** `blocker`: the object holding the name, for watching it go away. */
  | { kind: 'conflict'; message: string; blocker: KubeObject }
  /** `permanent`: the apiserver rejected this exact object (400/422); sending it again is pointless. */
  | { kind: 'failed'; message: string; retry: boolean; permanent: boolean };

export interface ApplyTarget {
  client: KubeClient;
  drift: DriftDetector;
  resource: Resource;
  grid: GridObject;
  desired: KubeObject;
  /** The object of that name in the labelled cache, if any. */
  cached: KubeObject | undefined;
  /** Ask the apiserver first: the name was held by a foreign object at the last look. */
  lookFirst?: boolean;
}

function conflict(desired: KubeObject, live: KubeObject): ApplyOutcome {
  const owner = controllerUid(live);
  const who = owner ? `is controlled by another owner (uid ${owner})` : 'exists and is not controlled by this grid';
  return { kind: 'conflict', message: `${desired.kind} ${desired.metadata!.namespace}/${desired.metadata!.name} ${who}`, blocker: live };
}

/** The apiserver's answer to an apply whose metadata.uid is not the live object's. */
function isUidMismatch(err: unknown): boolean {
  if (!(err instanceof ApiError)) return false;
  const causes = (err.body as { details?: { causes?: { field?: string }[] } } | undefined)?.details?.causes ?? [];
  if (err.statusCode === 422) return causes.some((c) => c.field === 'metadata.uid');
  return err.statusCode === 409 && /UID/i.test(err.message);
}

function failure(err: unknown): ApplyOutcome {
  const code = err instanceof ApiError ? err.statusCode : 0;
  const permanent = code === 400 || code === 422;
  return { kind: 'failed', message: (err as Error).message, retry: !permanent, permanent };
}

/**
 * Makes the live object match `desired` (server-side apply as FIELD_MANAGER, force: the grid owns
 * the fields it renders), unless the live object carries the same render hash already and nobody
 * changed a field the grid sets. A same-name object the grid does not control is reported as a
 * conflict and left untouched.
 */
export async function applyOwned(t: ApplyTarget): Promise<ApplyOutcome> {
  const { desired, grid } = t;
  const path = resourcePath(t.resource, desired.metadata!.namespace, desired.metadata!.name);
  let live = t.cached;
  if (t.lookFirst && !(live && isControlledBy(live, grid))) {
    try {
      live = await t.client.get<KubeObject>(path);
    } catch (err) {
      if (!isStatus(err, 404)) return failure(err);
      live = undefined;
    }
  }
  if (live && !isControlledBy(live, grid)) return conflict(desired, live);
  const hash = desired.metadata?.annotations?.[ANNOTATION_RENDER_HASH];
  const sameRender = !!live && !!hash && live.metadata?.annotations?.[ANNOTATION_RENDER_HASH] === hash;
  if (sameRender && !t.drift.drifted(desired, live!)) return { kind: 'unchanged', live: live! };
  try {
    const applied = await applyWithUid(t, path, live?.metadata?.uid ?? randomUUID());
    t.drift.recordApplied(desired, applied);
    return { kind: live ? 'updated' : 'created', live: applied };
  } catch (err) {
    if (!isUidMismatch(err)) return failure(err);
  }
  // The name is held by an object we did not expect: a foreign one, or ours but newer than the cache.
  try {
    live = await t.client.get<KubeObject>(path);
  } catch (err) {
    return failure(err);
  }
  if (!isControlledBy(live, grid)) return conflict(desired, live);
  try {
    const applied = await applyWithUid(t, path, live.metadata!.uid);
    t.drift.recordApplied(desired, applied);
    return { kind: 'updated', live: applied };
  } catch (err) {
    return failure(err);
  }
}

function applyWithUid(t: ApplyTarget, path: string, uid: string): Promise<KubeObject> {
  const body = { ...t.desired, metadata: { ...t.desired.metadata, uid } };
  return t.client.apply<KubeObject>(path, body, FIELD_MANAGER, true);
}

/** Deletes an owned object, only if it is still the one we saw (uid precondition). */
export async function deleteOwned(client: KubeClient, resource: Resource, obj: KubeObject): Promise<boolean> {
  const path = resourcePath(resource, obj.metadata!.namespace, obj.metadata!.name);
  try {
    await client.request('DELETE', path, {
      body: { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background', preconditions: { uid: obj.metadata!.uid } },
    });
    return true;
  } catch (err) {
    if (isStatus(err, 404) || isStatus(err, 409)) return false;
    throw err;
  }
}
