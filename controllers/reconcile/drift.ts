// Drift detection without write loops. The render hash says the live object was last applied
// from the same desired state; `covers` then checks that no other actor changed a field we set.
// The apiserver normalises some values (quantities like 1000m → 1, empty lists dropped), so a
// live object may never literally cover the desired one: after each apply we remember what the
// server made of it, and an object still looking exactly like that has not drifted.
//
// What was compared is remembered as digests, never as copies: a version of a live object found
// not drifted from a render (so it is not compared again), and the render hash each unit of a grid
// had at the grid's generation (so a unit whose grid did not change and whose live object is that
// same compared version is not even rendered again: a new unit costs one render, not one per unit).

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

/** `<resourceVersion> <render hash>`: a version of a live object and the render it was compared with. */
function cleanStamp(desired: KubeObject, live: KubeObject): string | undefined {
  const hash = desired.metadata?.annotations?.[ANNOTATION_RENDER_HASH];
  return live.metadata?.uid && hash && live.metadata.resourceVersion ? `${live.metadata.resourceVersion} ${hash}` : undefined;
}

export class DriftDetector {
  /** uid → fingerprint of the managed view right after our last apply, when `covers` cannot tell. */
  private readonly applied = new Map<string, string>();
  /**
   * uid → `<resourceVersion> <render hash>` of the last live object found not drifted from that
   * render: the same version of an object compared with the same render gives the same answer,
   * so a sync with nothing changed compares nothing again.
   */
  private readonly clean = new Map<string, string>();

  /**
   * grid uid → the generation its units were rendered at, and per unit `<object name> <render
   * hash>`: the render is a pure function of the grid's spec (its generation), the unit and the
   * name, so the same three give the same hash.
   */
  private readonly renders = new Map<string, { generation: number; units: Map<string, string> }>();

  /**
   * uid → the render our last write sent and the resourceVersion it returned, while only the
   * answer's metadata is known: the watch event of that version is what the apiserver made of the
   * render (see `seen`). An entry the cache never delivers (a relist that skipped it) is replaced
   * by the next write of the object or dropped with it.
   */
  private readonly awaitingEcho = new Map<string, { resourceVersion: string; desired: KubeObject }>();

  /**
   * A write answered with metadata only: this version is our render, so not drifted from it;
   * what the apiserver normalised in it is learnt when the cache shows that version.
   */
  recordWritten(desired: KubeObject, answer: KubeObject): void {
    const uid = answer.metadata?.uid as string | undefined;
    const resourceVersion = answer.metadata?.resourceVersion;
    if (!uid || !resourceVersion) return;
    this.applied.delete(uid);
    this.awaitingEcho.set(uid, { resourceVersion, desired });
    const stamp = cleanStamp(desired, answer);
    if (stamp) this.clean.set(uid, stamp);
  }

  /** The cache shows a version of an object: the one a metadata-only write returned is recorded as that write's result. */
  seen(live: KubeObject): void {
    const uid = live.metadata?.uid as string | undefined;
    const written = uid ? this.awaitingEcho.get(uid) : undefined;
    if (!written || written.resourceVersion !== live.metadata.resourceVersion) return;
    this.awaitingEcho.delete(uid!);
    this.recordApplied(written.desired, live);
  }

  recordApplied(desired: KubeObject, result: KubeObject): void {
    const uid = result.metadata?.uid as string | undefined;
    if (!uid) return;
    this.awaitingEcho.delete(uid);
    // The fingerprint only matters where the desired object is not literally covered by what
    // the apiserver made of it (normalised values); elsewhere `covers` alone answers, and the
    // digest of a whole object per write is not worth computing.
    const view = managedView(desired, result);
    if (covers(managedView(desired, desired), view)) this.applied.delete(uid);
    else this.applied.set(uid, fingerprint(view));
    // What the apiserver answered is this render as it stored it: not drifted from it.
    const stamp = cleanStamp(desired, result);
    if (stamp) this.clean.set(uid, stamp);
  }

  forget(uid: string | undefined): void {
    if (!uid) return;
    this.applied.delete(uid);
    this.clean.delete(uid);
    this.awaitingEcho.delete(uid);
  }

  /** Remembers the render of a grid's unit at the grid's current generation. */
  rendered(grid: KubeObject, unit: string, desired: KubeObject): void {
    const generation = grid.metadata.generation;
    const hash = desired.metadata?.annotations?.[ANNOTATION_RENDER_HASH];
    if (generation === undefined || !hash) return;
    let memo = this.renders.get(grid.metadata.uid!);
    if (memo?.generation !== generation) this.renders.set(grid.metadata.uid!, (memo = { generation, units: new Map() }));
    memo.units.set(unit, `${desired.metadata.name} ${hash}`);
  }

  /**
   * True when `live`, the unit's object named `name`, is known to match what rendering the unit
   * would give, without rendering it: the grid is at the generation the unit was rendered at
   * under that name, `live` carries that render's hash, and this very version of `live` was
   * found not drifted from it (or is what our write of it returned).
   */
  matchesLastRender(grid: KubeObject, unit: string, name: string, live: KubeObject): boolean {
    const memo = this.renders.get(grid.metadata.uid!);
    if (!memo || memo.generation !== grid.metadata.generation) return false;
    const entry = memo.units.get(unit);
    if (!entry?.startsWith(`${name} `)) return false;
    const hash = entry.slice(name.length + 1);
    const uid = live.metadata?.uid as string | undefined;
    return (
      !!uid &&
      live.metadata.annotations?.[ANNOTATION_RENDER_HASH] === hash &&
      this.clean.get(uid) === `${live.metadata.resourceVersion} ${hash}`
    );
  }

  /** Drops the renders of units a grid no longer has (`units`: those it has now). */
  keepUnits(gridUid: string, units: ReadonlySet<string>): void {
    const memo = this.renders.get(gridUid);
    if (!memo) return;
    for (const unit of memo.units.keys()) if (!units.has(unit)) memo.units.delete(unit);
  }

  forgetGrid(gridUid: string | undefined): void {
    if (gridUid) this.renders.delete(gridUid);
  }

  /** True when `live` has fields we manage that differ from `desired` and were changed by someone else. */
  drifted(desired: KubeObject, live: KubeObject): boolean {
    const uid = live.metadata?.uid as string | undefined;
    const stamp = cleanStamp(desired, live);
    if (stamp && this.clean.get(uid!) === stamp) return false;
    const view = managedView(desired, live);
    const known = uid ? this.applied.get(uid) : undefined;
    const drifted = !covers(managedView(desired, desired), view) && !(known && known === fingerprint(view));
    if (stamp && !drifted) this.clean.set(uid!, stamp);
    return drifted;
  }
}
