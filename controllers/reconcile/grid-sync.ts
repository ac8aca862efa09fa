// The level-triggered sync every grid kind shares: render the grid for the current units, write
// each unit's object unless it already matches, delete objects of units that are gone, then
// build the status and write it once, and post one event per kind of change. What differs per
// kind (rendering, the object kind, how a unit's readiness is read, kind-specific checks) comes
// from a GridKindParts.

import type { V1Condition } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { KubeClient } from '../../kube/client.ts';
import type { Informer } from '../../kube/informer.ts';
import type { KubeObject } from '../../kube/objects.ts';
import { REASON_APPLY_FAILED, REASON_CONFLICT } from '../api/v1alpha1.ts';
import type { RenderedUnitWorkload, UnitError } from '../render/deployment.ts';
import type { GateResult } from '../rollout/gate.ts';
import { type ApplyOutcome, applyOwned, deleteOwned } from './apply.ts';
import type { ObjectsByGrid } from './by-grid.ts';
import { forEachConcurrently, UNIT_CONCURRENCY, type WriteLimiter } from './concurrency.ts';
import { degradedCondition, progressingCondition, readyCondition, sortProblems, type UnitProblem } from './conditions.ts';
import type { DriftDetector } from './drift.ts';
import { type EventRecorder, SyncEvents } from './events.ts';
import type { FailureMemory } from './failures.ts';
import type { RecentWrites } from './recent.ts';
import { type GridObject, isControlledBy, objectRef, type Resource } from './resources.ts';
import type { StatusWriter } from './status.ts';

/** Objects named in the log line of a sync that wrote objects (the count of each change is complete). */
const LOGGED_OBJECTS = 10;

/** One object a grid wants, or why a unit has none. Unit '' is grid-wide (a ServiceGrid's shared Service). */
export interface RenderedObject {
  unit: string;
  /** Object name; empty when the unit has no object (no name could be assigned, or none is wanted). */
  name: string;
  template: string;
  /** May be a getter that renders on first read: read it only when the object is needed. */
  desired?: KubeObject;
  /** May be a getter too (an override fails only when the unit is rendered). */
  error?: UnitError;
}

/**
 * A workload renderer's units as the sync takes them (the rendered workload is the desired
 * object). Getters: a unit's object stays unrendered until the sync reads it.
 */
export function workloadObjects<W>(units: RenderedUnitWorkload<W>[]): RenderedObject[] {
  return units.map((u) => ({
    unit: u.unit,
    name: u.name,
    template: u.template,
    get desired() {
      return u.object as KubeObject | undefined;
    },
    get error() {
      return u.error;
    },
  }));
}

export interface UnitReading {
  status: { error?: string; [k: string]: unknown };
  ready: boolean;
  /** Rolled out (or otherwise done): not Progressing. */
  settled: boolean;
}

/** A condition whose True state is announced with an event once per message. */
export interface Notice {
  condition: V1Condition;
  eventType: 'Normal' | 'Warning';
}

export interface KindExtras {
  fields?: Record<string, unknown>;
  conditions?: Notice[];
  /** Sync again after this long (e.g. evictions waiting on a disruption budget). */
  requeueAfterMs?: number;
}

/** What one sync is working with, for the kind-specific parts. */
export interface SyncView<G extends GridObject> {
  grid: G;
  units: readonly string[];
  rendered: RenderedObject[];
  /** Live objects the grid controls, by name, after this sync's writes. */
  live: Map<string, KubeObject>;
  changes: SyncEvents;
  log: Logger;
}

export interface GridKindParts<G extends GridObject> {
  kind: string;
  gridResource: Resource;
  objectResource: Resource;
  /** Kind of the rendered objects, for messages (Deployment, Service). */
  objectKind: string;
  /** Cache of the rendered objects (labelled with the grid). */
  objects: Informer<KubeObject>;
  /** The names in `objects` by grid label. */
  byGrid: ObjectsByGrid;
  render(grid: G, units: readonly string[]): RenderedObject[];
  /** When the live object cannot take `desired` in place: delete and recreate it, or report why not. */
  replacement?(unit: string, live: KubeObject, desired: KubeObject): 'recreate' | UnitError | undefined;
  /** Reads each unit's status from the caches once the writes are done. */
  unitReader(view: SyncView<G>): (r: RenderedObject, live: KubeObject | undefined) => UnitReading;
  progress: { movingReason: string; movingWhat: string; doneMessage: string; readyWhat: string };
  /** Kind-specific work after the objects are written: extra status fields and conditions. */
  extras?(view: SyncView<G>): Promise<KindExtras>;
  /**
   * Decides, before any write, which units take their render now (a rollout): may hold a unit
   * (no desired object: it keeps what it runs) or give it another desired object. `current` is
   * the grid's live object of a name as this sync sees it.
   */
  gate?(grid: G, rendered: RenderedObject[], current: (name: string) => KubeObject | undefined): GateResult;
}

/** What a grid sync needs from the controller. */
export interface SyncContext {
  client: KubeClient;
  log: Logger;
  recorder: EventRecorder;
  drift: DriftDetector;
  failures: FailureMemory;
  statuses: StatusWriter;
  /** Objects written by earlier syncs that the caches do not show yet, by object ref. */
  written: RecentWrites<KubeObject>;
  /** Bounds the writes in flight across the process; object writes go first. */
  writes: WriteLimiter;
}

export interface SyncResult {
  totalUnits: number;
  readyUnits: number;
  /** A retriable failure happened: sync again later with backoff. */
  retry: boolean;
  requeueAfterMs?: number;
  /** Names the grid wants that objects it does not control hold. */
  blocked: Blocked[];
}

export interface Blocked {
  resource: Resource;
  ref: string;
  blocker: KubeObject;
}

export async function syncGrid<G extends GridObject>(
  ctx: SyncContext,
  parts: GridKindParts<G>,
  grid: G,
  units: readonly string[],
  /**
   * Called once every object write of this sync is answered, before the kind-specific extras,
   * the status write and the events: the caller may start other grids' object writes meanwhile.
   */
  objectsWritten?: () => void,
): Promise<SyncResult> {
  const ns = grid.metadata.namespace;
  const log = ctx.log.child({ grid: `${ns}/${grid.metadata.name}`, kind: grid.kind });
  const current = (name: string) => {
    const inCache = parts.objects.get(ns, name);
    const o = ctx.written.get(objectRef(parts.objectResource, ns, name), inCache?.metadata?.resourceVersion) ?? inCache;
    return o && isControlledBy(o, grid) ? o : undefined;
  };
  const wanted = parts.render(grid, units);
  const gate = parts.gate?.(grid, wanted, current);
  const rendered = gate?.rendered ?? wanted;
  // The render memo speaks of the grid's own render; a rollout may hold units or send others.
  const asRendered = rendered === wanted;
  const problems: UnitProblem[] = [];
  const live = new Map<string, KubeObject>();
  const changes = new SyncEvents();
  const blocked: Blocked[] = [];
  let retry = false;

  await forEachConcurrently(rendered, UNIT_CONCURRENCY, async (r) => {
    const ref = objectRef(parts.objectResource, ns, r.name);
    const inCache = r.name ? parts.objects.get(ns, r.name) : undefined;
    const cached = r.name ? (ctx.written.get(ref, inCache?.metadata.resourceVersion) ?? inCache) : undefined;
    let owned = cached && isControlledBy(cached, grid) ? cached : undefined;
    if (owned) live.set(r.name, owned);
    // Known to match its render already: nothing to render, compare or write for this unit.
    if (owned && asRendered && ctx.drift.matchesLastRender(grid, r.unit, r.name, owned)) return;
    if (r.error) {
      problems.push({ unit: r.unit, ...r.error });
      return;
    }
    const desired = r.desired;
    if (!desired) return;
    if (asRendered) ctx.drift.rendered(grid, r.unit, desired);
    const what = r.unit === '' ? r.name : `${r.name} (unit ${JSON.stringify(r.unit)})`;
    const rejected = ctx.failures.rejection(ref, desired, owned);
    if (rejected) {
      problems.push({ unit: r.unit, reason: REASON_APPLY_FAILED, message: rejected });
      return;
    }
    const replace = owned ? parts.replacement?.(r.unit, owned, desired) : undefined;
    if (replace === 'recreate') {
      log.info({ unit: r.unit, object: r.name }, `recreating ${parts.objectKind}: a changed field is immutable`);
      if (await ctx.writes.run('object', () => deleteOwned(ctx.client, parts.objectResource, owned!))) changes.add('Deleted', what);
      live.delete(r.name);
      owned = undefined;
    } else if (replace) {
      problems.push({ unit: r.unit, ...replace });
      return;
    }
    const outcome = await watchedWrite(ctx.written, ref, () =>
      ctx.writes.run('object', () =>
        applyOwned({
          client: ctx.client,
          drift: ctx.drift,
          resource: parts.objectResource,
          grid,
          desired,
          cached: replace === 'recreate' ? undefined : cached,
          lookFirst: ctx.failures.isTaken(ref),
        }),
      ),
    );
    switch (outcome.kind) {
      case 'unchanged':
      case 'created':
      case 'updated':
        live.set(r.name, outcome.live);
        if (outcome.kind !== 'unchanged') {
          // The watch event of the write may have come before its answer.
          const echo = parts.objects.get(ns, r.name);
          if (echo) ctx.drift.seen(echo);
        }
        ctx.failures.clear(ref);
        if (outcome.kind !== 'unchanged') {
          changes.add(outcome.kind === 'created' ? 'Created' : 'Updated', what);
          log.debug({ unit: r.unit, object: r.name }, `${outcome.kind} ${parts.objectKind.toLowerCase()}`);
        }
        break;
      case 'conflict':
        ctx.failures.takenNow(ref);
        blocked.push({ resource: parts.objectResource, ref, blocker: outcome.blocker });
        problems.push({ unit: r.unit, reason: REASON_CONFLICT, message: outcome.message });
        break;
      case 'failed':
        retry ||= outcome.retry;
        if (outcome.permanent) ctx.failures.rejectedNow(ref, desired, owned, outcome.message);
        problems.push({ unit: r.unit, reason: REASON_APPLY_FAILED, message: outcome.message });
        break;
    }
  });

  ctx.drift.keepUnits(grid.metadata.uid, new Set(rendered.map((r) => r.unit)));

  // Objects of units that are gone are deleted; a failed unit keeps whatever it had.
  const keep = new Set(rendered.map((r) => r.name).filter(Boolean));
  const leftovers = parts.byGrid
    .of(ns, grid.metadata.name)
    .filter((name) => !keep.has(name))
    .map((name) => parts.objects.get(ns, name))
    .filter((o): o is KubeObject => !!o && isControlledBy(o, grid));
  await forEachConcurrently(leftovers, UNIT_CONCURRENCY, async (o) => {
    if (await ctx.writes.run('object', () => deleteOwned(ctx.client, parts.objectResource, o))) {
      const unit = o.metadata?.labels?.['servicegroup.io/unit'];
      changes.add('Deleted', unit === undefined ? o.metadata!.name! : `${o.metadata!.name} (unit ${JSON.stringify(unit)})`);
      log.debug({ unit, object: o.metadata!.name }, `deleted ${parts.objectKind.toLowerCase()}`);
    }
  });
  // One line per sync that wrote objects rather than one per object: a grid over hundreds of
  // units would otherwise log hundreds of lines per change (and spend its time formatting them).
  if (!changes.empty) log.info(changes.logFields(LOGGED_OBJECTS), `${parts.objectKind} objects written`);

  objectsWritten?.();
  // What follows reports on the objects (and its writes are deferred anyway): while other syncs
  // still have object writes under way (a new unit touches every grid of its key), computing it
  // would take the thread from them.
  await ctx.writes.objectsSettled();
  const view: SyncView<G> = { grid, units, rendered, live, changes, log };
  const extras = (await parts.extras?.(view)) ?? {};
  sortProblems(problems);
  const problemByUnit = new Map(problems.map((p) => [p.unit, p]));
  const read = parts.unitReader(view);
  const rows = rendered
    .filter((r) => r.unit !== '')
    .map((r) => {
      const reading = read(r, live.get(r.name));
      const p = problemByUnit.get(r.unit);
      if (p) reading.status.error = `${p.reason}: ${p.message}`;
      Object.assign(reading.status, gate?.unitFields?.get(r.unit));
      return { unit: r.unit, reading, failed: !!p };
    });
  const gen = grid.metadata.generation;
  const old = grid.status?.conditions;
  const total = rows.length;
  const ready = rows.filter((x) => !x.failed && x.reading.ready).length;
  const status = {
    observedGeneration: gen,
    ...extras.fields,
    ...gate?.fields,
    totalUnits: total,
    readyUnits: ready,
    units: rows.map((x) => x.reading.status),
    conditions: [
      readyCondition(
        old,
        { gridUniqKey: grid.spec?.gridUniqKey, total, ready, gridWideOk: !problemByUnit.has(''), what: parts.progress.readyWhat },
        gen,
      ),
      gate?.progressing ??
        progressingCondition(
          old,
          {
            moving: rows.filter((x) => !x.failed && !x.reading.settled).map((x) => x.unit),
            blocked: problems.map((p) => p.unit).filter((u) => u !== ''),
            movingReason: parts.progress.movingReason,
            movingWhat: parts.progress.movingWhat,
            doneMessage: parts.progress.doneMessage,
          },
          gen,
        ),
      degradedCondition(old, problems, gen),
      ...(extras.conditions ?? []).map((n) => n.condition),
    ],
  };
  if (await ctx.statuses.write(ctx.client, parts.gridResource, grid, status)) log.debug({ readyUnits: ready, total }, 'status written');

  changes.post(ctx.recorder, grid, parts.objectKind);
  for (const e of gate?.events ?? []) {
    log.info({ reason: e.reason }, e.message);
    ctx.recorder.record(grid, e.type, e.reason, 'Rollout', e.message);
  }
  announceNew(ctx, grid, problems, extras.conditions ?? [], log);
  return { totalUnits: total, readyUnits: ready, retry, requeueAfterMs: extras.requeueAfterMs, blocked };
}

/**
 * Runs the write of the object `ref` and remembers what it wrote until the cache shows it. Watch
 * events of that object delivered meanwhile are held rather than queueing the grid again (see
 * the controller's handler of rendered objects): the one carrying the version the write answered
 * with is its echo; the others are released when the write ends.
 */
async function watchedWrite(written: RecentWrites<KubeObject>, ref: string, write: () => Promise<ApplyOutcome>): Promise<ApplyOutcome> {
  written.started(ref);
  let outcome: ApplyOutcome;
  try {
    outcome = await write();
  } catch (err) {
    // No event of the object may stay held.
    written.finished(ref);
    throw err;
  }
  const wrote = outcome.kind === 'created' || outcome.kind === 'updated' ? outcome.live : undefined;
  written.finished(ref, wrote && { resourceVersion: wrote.metadata?.resourceVersion, value: wrote });
  return outcome;
}

/** One Warning per reason for problems not announced before; one event per notice whose message is new. */
function announceNew(ctx: SyncContext, grid: GridObject, problems: UnitProblem[], notices: Notice[], log: Logger): void {
  const current = new Map<string, string>();
  for (const p of problems) current.set(`unit:${p.unit}`, `${p.reason}: ${p.message}`);
  for (const n of notices) if (n.condition.status === 'True') current.set(`condition:${n.condition.type}`, n.condition.message ?? '');
  const fresh = new Set(
    ctx.recorder.fresh(grid, current, () => {
      // First sight of this grid since start: what its status already shows was announced before.
      const known = new Map<string, string>();
      for (const u of (grid.status?.units ?? []) as { name: string; error?: string }[]) if (u.error) known.set(`unit:${u.name}`, u.error);
      for (const c of grid.status?.conditions ?? []) if (c.status === 'True') known.set(`condition:${c.type}`, c.message ?? '');
      const degraded = current.get('unit:');
      if (degraded && grid.status?.conditions?.some((c) => c.type === 'Degraded' && c.message?.includes(degraded)))
        known.set('unit:', degraded);
      return known;
    }),
  );
  const byReason = new Map<string, UnitProblem[]>();
  for (const p of problems) {
    if (!fresh.has(`unit:${p.unit}`)) continue;
    log.warn({ unit: p.unit || undefined, reason: p.reason, err: p.message }, 'unit failed');
    let l = byReason.get(p.reason);
    if (!l) byReason.set(p.reason, (l = []));
    l.push(p);
  }
  for (const [reason, list] of byReason) {
    const one = (p: UnitProblem) => (p.unit === '' ? p.message : `unit ${JSON.stringify(p.unit)}: ${p.message}`);
    const note = list.length === 1 ? one(list[0]!) : `${list.length} units: ${list.map(one).join('; ')}`;
    ctx.recorder.record(grid, 'Warning', reason, 'Reconcile', note);
  }
  for (const n of notices) {
    if (!fresh.has(`condition:${n.condition.type}`)) continue;
    ctx.recorder.record(grid, n.eventType, n.condition.reason ?? n.condition.type, 'Reconcile', n.condition.message ?? '');
  }
}
