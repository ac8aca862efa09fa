// Drift detection without write loops. The render hash says the live object was last applied
// from the same desired state; `covers` then checks that no other actor changed a field we set.
// The apiserver normalises some values (quantities like 1000m → 1, empty lists dropped), so a
// live object may never literally cover the desired one: after each apply we remember what the
// server made of it, and an object still looking exactly like that has not drifted.

import { createHash } from 'node:crypto';
import type { KubeObject } from '../../kube/objects.ts';
import { ANNOTATION_RENDER_HASH } from '../api/v1alpha1.ts';
import { stableStringify } from '../render/common.ts';

function isEmpty(v: unknown): boolean {
  return (
    v === null ||
    v === undefined ||
    (Array.isArray(v) && v.length === 0) ||
    (typeof v === 'object' && Object.keys(v as object).length === 0)
  );
}

/** True when every value set in `desired` is present and equal in `live` (extra live fields are fine). */
export function covers(desired: unknown, live: unknown): boolean {
  if (desired === undefined) return true;
  if (isEmpty(desired))
    return isEmpty(live) || (typeof live === 'object' && live !== null && Array.isArray(live) === Array.isArray(desired));
  if (Array.isArray(desired)) {
    return Array.isArray(live) && live.length === desired.length && desired.every((d, i) => covers(d, live[i]));
  }
  if (typeof desired === 'object') {
    if (typeof live !== 'object' || live === null || Array.isArray(live)) return false;
    return Object.entries(desired as Record<string, unknown>).every(([k, v]) => covers(v, (live as Record<string, unknown>)[k]));
  }
  return desired === live;
}

/** The parts of an object the controller sets: spec, and its own labels and annotations. */
function managedView(desired: KubeObject, obj: KubeObject): unknown {
  const pick = (from: Record<string, string> | undefined, keys: Record<string, string> | undefined) =>
    Object.fromEntries(Object.keys(keys ?? {}).map((k) => [k, from?.[k]]));
  return {
    spec: obj.spec,
    labels: pick(obj.metadata?.labels, desired.metadata?.labels),
    annotations: pick(obj.metadata?.annotations, desired.metadata?.annotations),
    ownerReferences: obj.metadata?.ownerReferences,
  };
}

/** A digest of the view rather than its text: one is kept per rendered object for the process's life. */
function fingerprint(view: unknown): string {
  return createHash('sha256').update(stableStringify(view)).digest('base64');
}

export class DriftDetector {
  /** uid → fingerprint of the managed view right after our last apply. */
  private readonly applied = new Map<string, string>();
  /**
   * uid → `<resourceVersion> <render hash>` of the last live object found not drifted from that
   * render: the same version of an object compared with the same render gives the same answer,
   * so a sync with nothing changed compares nothing again.
   */
  private readonly clean = new Map<string, string>();

  recordApplied(desired: KubeObject, result: KubeObject): void {
    const uid = result.metadata?.uid as string | undefined;
    if (uid) this.applied.set(uid, fingerprint(managedView(desired, result)));
  }

  forget(uid: string | undefined): void {
    if (!uid) return;
    this.applied.delete(uid);
    this.clean.delete(uid);
  }

  /** True when `live` has fields we manage that differ from `desired` and were changed by someone else. */
  drifted(desired: KubeObject, live: KubeObject): boolean {
    const uid = live.metadata?.uid as string | undefined;
    const hash = desired.metadata?.annotations?.[ANNOTATION_RENDER_HASH];
    const stamp = uid && hash && live.metadata?.resourceVersion ? `${live.metadata.resourceVersion} ${hash}` : undefined;
    if (stamp && this.clean.get(uid!) === stamp) return false;
    const view = managedView(desired, live);
    const drifted = !(uid && this.applied.get(uid) === fingerprint(view)) && !covers(managedView(desired, desired), view);
    if (stamp && !drifted) this.clean.set(uid!, stamp);
    return drifted;
  }
}
