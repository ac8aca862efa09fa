// Writes of rendered objects, one request per object in the common cases. The labelled cache
// says whether the grid already owns an object: a new one is created with a POST (refused with
// 409 when the name is taken, the only case that costs a GET to see who holds it), an owned one
// is updated by server-side apply carrying its uid (refused when the name now belongs to another
// object). So no write can take over an object the grid did not create.
//
// A POST records its fields under an `Update` entry of our field manager, and server-side apply
// never removes fields another entry still owns; before the first apply to such an object, that
// entry is merged into our `Apply` entry (what client-go's csaupgrade does), so a field dropped
// from the template is removed from the object.
//
// Writes ask for the answer's metadata only (uid, resourceVersion, managedFields: what the sync
// reads of a written object besides what it sent); the apiserver's defaulted and normalised spec
// reaches the drift detector with the watch event of that version. A repair of drift asks for the
// whole answer instead, so that even when that event is missed the detector learns what the
// apiserver makes of the render, and the repair is not repeated.

import { ApiError, isMetadataOnly, isStatus, type KubeClient } from '../../kube/client.ts';
import type { KubeObject } from '../../kube/objects.ts';
import { resourcePath } from '../../kube/objects.ts';
import { ANNOTATION_RENDER_HASH } from '../api/v1alpha1.ts';
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
  return err instanceof StaleObject || (isStatus(err, 409) && /uid mismatch/i.test((err as Error).message));
}

/** The object changed since we looked at it. */
class StaleObject extends Error {}

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
  const ns = desired.metadata!.namespace!;
  const path = resourcePath(t.resource, ns, desired.metadata!.name);
  let live = t.cached;
  if (t.lookFirst && !(live && isControlledBy(live, grid))) {
    const found = await look(t, path);
    if ('kind' in found) return found;
    live = found.live;
  }
  if (live && !isControlledBy(live, grid)) return conflict(desired, live);
  if (!live) {
    try {
      const answer = await t.client.request<KubeObject>('POST', resourcePath(t.resource, ns), {
        query: { fieldManager: FIELD_MANAGER },
        body: desired,
        answer: 'metadata',
      });
      return { kind: 'created', live: recordWrite(t, answer, undefined) };
    } catch (err) {
      if (!isStatus(err, 409)) return failure(err);
    }
    // The name is taken: by a foreign object, or by ours when the cache is behind.
    const found = await look(t, path);
    if ('kind' in found) return found;
    if (!found.live)
      return {
        kind: 'failed',
        message: `${desired.kind} ${ns}/${desired.metadata!.name} vanished while created`,
        retry: true,
        permanent: false,
      };
    live = found.live;
    if (!isControlledBy(live, grid)) return conflict(desired, live);
  }
  const hash = desired.metadata?.annotations?.[ANNOTATION_RENDER_HASH];
  // The live object carries this render: a write now repairs drift.
  const repair = !!hash && live.metadata?.annotations?.[ANNOTATION_RENDER_HASH] === hash;
  if (repair && !t.drift.drifted(desired, live)) return { kind: 'unchanged', live };
  try {
    await upgradeCreateEntry(t.client, path, live);
    const applied = await applyWithUid(t, path, live.metadata!.uid, repair);
    return { kind: 'updated', live: recordWrite(t, applied, live.status) };
  } catch (err) {
    if (!isUidMismatch(err)) return failure(err);
  }
  // Replaced or changed since the cache saw it: look again, then apply to what is there now.
  const found = await look(t, path);
  if ('kind' in found) return found;
  if (!found.live)
    return {
      kind: 'failed',
      message: `${desired.kind} ${ns}/${desired.metadata!.name} vanished while updated`,
      retry: true,
      permanent: false,
    };
  if (!isControlledBy(found.live, grid)) return conflict(desired, found.live);
  try {
    await upgradeCreateEntry(t.client, path, found.live);
    // Rare (the object changed under us): the whole answer, as for a repair.
    const applied = await applyWithUid(t, path, found.live.metadata!.uid, true);
    return { kind: 'updated', live: recordWrite(t, applied, found.live.status) };
  } catch (err) {
    return failure(err);
  }
}

/** GET: the object, `{ live: undefined }` when there is none, or a failure outcome. */
async function look(t: ApplyTarget, path: string): Promise<{ live: KubeObject | undefined } | ApplyOutcome> {
  try {
    return { live: await t.client.get<KubeObject>(path) };
  } catch (err) {
    return isStatus(err, 404) ? { live: undefined } : failure(err);
  }
}

/** `whole`: ask for the whole object in answer, not only its metadata. */
function applyWithUid(t: ApplyTarget, path: string, uid: string | undefined, whole: boolean): Promise<KubeObject> {
  const body = { ...t.desired, metadata: { ...t.desired.metadata, uid } };
  return t.client.apply<KubeObject>(path, body, FIELD_MANAGER, true, whole ? 'whole' : 'metadata');
}

/**
 * Tells the drift detector of a write's answer and returns the object as the sync goes on with
 * it: the answer itself when whole; else the desired object with the answer's metadata and the
 * status the object had (a write of the object never changes its status).
 */
function recordWrite(t: ApplyTarget, answer: KubeObject, status: unknown): KubeObject {
  if (!isMetadataOnly(answer)) {
    t.drift.recordApplied(t.desired, answer);
    return answer;
  }
  t.drift.recordWritten(t.desired, answer);
  return { ...t.desired, metadata: answer.metadata, ...(status === undefined ? {} : { status }) };
}

interface ManagedFieldsEntry {
  manager?: string;
  operation?: string;
  subresource?: string;
  fieldsV1?: Record<string, unknown>;
  [k: string]: unknown;
}

/** Union of two field sets (FieldsV1: nested maps whose keys name fields, list items and values). */
export function mergeFieldSets(a: Record<string, unknown> = {}, b: Record<string, unknown> = {}): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = mergeFieldSets(out[k] as Record<string, unknown>, v as Record<string, unknown>);
  return out;
}

/**
 * `managedFields` with our field manager's `Update` entry (left by a create) merged into its
 * `Apply` entry; undefined when there is no such entry.
 */
export function upgradedManagedFields(entries: ManagedFieldsEntry[] | undefined): ManagedFieldsEntry[] | undefined {
  const ours = (op: string) => (e: ManagedFieldsEntry) => e.manager === FIELD_MANAGER && e.operation === op && !e.subresource;
  const update = entries?.find(ours('Update'));
  if (!entries || !update) return undefined;
  const apply = entries.find(ours('Apply'));
  const merged: ManagedFieldsEntry = {
    ...(apply ?? update),
    operation: 'Apply',
    fieldsV1: mergeFieldSets(apply?.fieldsV1, update.fieldsV1),
  };
  return [...entries.filter((e) => e !== update && e !== apply), merged];
}

/** Hands the fields a create recorded under `Update` to our `Apply` entry (only if the object did not change meanwhile). */
async function upgradeCreateEntry(client: KubeClient, path: string, cached: KubeObject): Promise<void> {
  // Caches may drop managedFields to save memory: then one read (updates are rare) tells.
  const live =
    cached.metadata?.managedFields === undefined ? await client.request<KubeObject>('GET', path, { answer: 'metadata' }) : cached;
  const upgraded = upgradedManagedFields(live.metadata?.managedFields as ManagedFieldsEntry[] | undefined);
  if (!upgraded) return;
  try {
    await client.request('PATCH', path, {
      query: { fieldManager: FIELD_MANAGER },
      answer: 'none',
      contentType: 'application/json-patch+json',
      body: [
        { op: 'test', path: '/metadata/resourceVersion', value: live.metadata!.resourceVersion },
        { op: 'replace', path: '/metadata/managedFields', value: upgraded },
      ],
    });
  } catch (err) {
    // A failed test (the object moved on) or a conflict: look again.
    if (isStatus(err, 409) || isStatus(err, 422)) throw new StaleObject((err as Error).message);
    throw err;
  }
}

/** Deletes an owned object, only if it is still the one we saw (uid precondition). */
export async function deleteOwned(client: KubeClient, resource: Resource, obj: KubeObject): Promise<boolean> {
  const path = resourcePath(resource, obj.metadata!.namespace, obj.metadata!.name);
  try {
    await client.request('DELETE', path, {
      body: { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background', preconditions: { uid: obj.metadata!.uid } },
      answer: 'none',
    });
    return true;
  } catch (err) {
    if (isStatus(err, 404) || isStatus(err, 409)) return false;
    throw err;
  }
}
