// Wires informers, the work queue and the grid syncs. Every event is mapped to the grid keys
// it can affect; a worker syncs one key at a time from the caches (level-triggered).

import type { Logger } from 'pino';
import type { KubeClient } from '../../kube/client.ts';
import { Informer } from '../../kube/informer.ts';
import type { KubeObject } from '../../kube/objects.ts';
import type { ReflectorOptions } from '../../kube/reflector.ts';
import { KIND_DEPLOYMENT_GRID, KIND_SERVICE_GRID, KIND_STATEFULSET_GRID, LABEL_GRID, LABEL_UNIT } from '../api/v1alpha1.ts';
import type { ControllerMetrics } from '../metrics.ts';
import { NodeMembership } from '../nodeunit/membership.ts';
import type { NodeView } from '../nodeunit/render.ts';
import { BlockerWatches } from './blockers.ts';
import { deploymentView, endpointSliceView, podView, serviceView, slimNode, statefulSetView } from './cache-views.ts';
import { CONTROLLER_WRITE_CONCURRENCY, WriteLimiter } from './concurrency.ts';
import { deploymentGridParts } from './deploymentgrid.ts';
import { DriftDetector } from './drift.ts';
import { EventRecorder } from './events.ts';
import { Evictor } from './eviction.ts';
import { FailureMemory } from './failures.ts';
import { type Blocked, type GridKindParts, type SyncContext, syncGrid } from './grid-sync.ts';
import { WorkQueue } from './queue.ts';
import { RecentWrites } from './recent.ts';
import {
  DEPLOYMENT_GRIDS,
  DEPLOYMENTS,
  ENDPOINT_SLICES,
  type GridObject,
  NODES,
  objectRef,
  PODS,
  type Resource,
  SERVICE_GRIDS,
  SERVICES,
  STATEFULSET_GRIDS,
  STATEFULSETS,
} from './resources.ts';
import { serviceGridParts } from './servicegrid.ts';
import { statefulSetGridParts } from './statefulsetgrid.ts';
import { StatusWriter } from './status.ts';

export const DEFAULT_WORKERS = 64;
/**
 * Syncs past their object writes (status and events under way) before the workers wait for one
 * to end: a bound on memory only (the write limiter bounds the requests in flight). Status writes
 * wait for object writes, so a lower bound than the grids one change touches (100 grids on a new
 * unit) would stop the workers until statuses are written, in the middle of the object writes.
 */
const MAX_TRAILING_SYNCS = 256;

export interface ControllerOptions {
  client: KubeClient;
  log: Logger;
  metrics?: ControllerMetrics;
  /** Name of this replica, for events. */
  instance?: string;
  workers?: number;
  /** Re-sync every grid from the caches this often (0: never). */
  resyncPeriodMs?: number;
  /** Evict pods a relabel left on a node of another unit (default true); when false they are only reported. */
  evictMisplacedPods?: boolean;
  /** A watch silent this long is taken for a dead connection and re-opened (default: the reflector's). */
  watchIdleTimeoutMs?: number;
  /** The process's write limiter, shared with the NodeUnit controller (default: one of its own). */
  writes?: WriteLimiter;
}

type Kind = typeof KIND_DEPLOYMENT_GRID | typeof KIND_SERVICE_GRID | typeof KIND_STATEFULSET_GRID;

function gridKey(kind: string, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

interface GridKindEntry {
  grids: Informer<KubeObject>;
  parts: GridKindParts<GridObject>;
}

export class GridController {
  readonly queue: WorkQueue;
  private readonly opts: ControllerOptions;
  private readonly log: Logger;
  private readonly ctx: SyncContext;
  readonly deploymentGrids: Informer<KubeObject>;
  readonly serviceGrids: Informer<KubeObject>;
  readonly statefulSetGrids: Informer<KubeObject>;
  readonly nodes: Informer<KubeObject>;
  /** The Node cache grouped by label value: the units of each grid's key (shared with the NodeUnit controller). */
  readonly membership: NodeMembership;
  readonly deployments: Informer<KubeObject>;
  readonly statefulSets: Informer<KubeObject>;
  readonly services: Informer<KubeObject>;
  readonly endpointSlices: Informer<KubeObject>;
  readonly pods: Informer<KubeObject>;
  private readonly informers: Informer<KubeObject>[];
  private readonly kinds: Map<string, GridKindEntry>;
  private readonly blockers: BlockerWatches;
  /** object ref → grid keys it blocks; grid key → the refs blocking it. */
  private readonly blockedGrids = new Map<string, Set<string>>();
  private readonly blocking = new Map<string, Set<string>>();
  private resyncTimer?: NodeJS.Timeout;
  private workers: Promise<void>[] = [];
  /** Syncs whose objects are written and whose status and events are still under way. */
  private readonly trailing = new Set<Promise<void>>();
  /** The last sync start handed out: the next one starts a turn of the event loop after it. */
  private lastStart: Promise<void> = Promise.resolve();
  private deadWorkers = 0;
  private started = false;
  private stopping = false;
  private readonly unitCounts = new Map<string, { total: number; ready: number }>();
  /** Label key → how many grids are keyed on it. */
  private readonly gridKeys = new Map<string, number>();

  constructor(opts: ControllerOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.queue = new WorkQueue({ metrics: opts.metrics?.workqueue });
    const writes = opts.writes ?? new WriteLimiter(CONTROLLER_WRITE_CONCURRENCY);
    this.ctx = {
      client: opts.client,
      log: opts.log,
      recorder: new EventRecorder(opts.client, opts.log, opts.instance ?? 'servicegroup-controller', writes),
      drift: new DriftDetector(),
      failures: new FailureMemory(),
      statuses: new StatusWriter(writes),
      written: new RecentWrites<KubeObject>(),
      writes,
    };
    const informer = (r: Resource, options: ReflectorOptions = {}) =>
      new Informer<KubeObject>(opts.client, r, opts.log, { watchIdleTimeoutMs: opts.watchIdleTimeoutMs, ...options });
    this.deploymentGrids = informer(DEPLOYMENT_GRIDS);
    this.serviceGrids = informer(SERVICE_GRIDS);
    this.statefulSetGrids = informer(STATEFULSET_GRIDS);
    // Units are node label values: labels are all this controller reads of a Node. The NodeUnit
    // controller shares this cache and also reads readiness, so it is a watch of whole Nodes
    // slimmed as they arrive rather than a metadata-only one: one Node watch for both.
    // Paged: the watch cache would answer the first list of 10,000 Nodes in one body of ~100 MB.
    this.nodes = informer(NODES, { keep: slimNode, pagedLists: true });
    this.membership = NodeMembership.following(this.nodes);
    // Only labelled objects are cached; a same-name foreign object is found when a write runs into it.
    this.deployments = informer(DEPLOYMENTS, { labelSelector: LABEL_GRID, keep: deploymentView });
    this.statefulSets = informer(STATEFULSETS, { labelSelector: LABEL_GRID, keep: statefulSetView });
    this.services = informer(SERVICES, { labelSelector: LABEL_GRID, keep: serviceView });
    this.endpointSlices = informer(ENDPOINT_SLICES, { labelSelector: LABEL_GRID, keep: endpointSliceView });
    // Pods of rendered workloads only (their templates carry both labels), for misplaced pods;
    // of each, only what that check reads.
    this.pods = informer(PODS, { labelSelector: `${LABEL_GRID},${LABEL_UNIT}`, keep: podView });
    this.informers = [
      this.deploymentGrids,
      this.serviceGrids,
      this.statefulSetGrids,
      this.nodes,
      this.deployments,
      this.statefulSets,
      this.services,
      this.endpointSlices,
      this.pods,
    ];
    this.blockers = new BlockerWatches(opts.client, opts.log, (ref) => this.unblocked(ref));

    const evictor = opts.evictMisplacedPods === false ? undefined : new Evictor(opts.client, opts.log);
    this.kinds = new Map<string, GridKindEntry>([
      [
        KIND_DEPLOYMENT_GRID,
        {
          grids: this.deploymentGrids,
          parts: deploymentGridParts(
            { deployments: this.deployments, pods: this.pods, nodes: this.nodes },
            evictor,
          ) as GridKindParts<GridObject>,
        },
      ],
      [
        KIND_SERVICE_GRID,
        {
          grids: this.serviceGrids,
          parts: serviceGridParts({
            services: this.services,
            endpointSlices: this.endpointSlices,
            nodes: this.nodes,
          }) as GridKindParts<GridObject>,
        },
      ],
      [
        KIND_STATEFULSET_GRID,
        {
          grids: this.statefulSetGrids,
          parts: statefulSetGridParts({ statefulSets: this.statefulSets }) as GridKindParts<GridObject>,
        },
      ],
    ]);

    for (const [kind, { grids }] of this.kinds) grids.on((type, obj, old) => this.onGrid(kind, type, obj, old));
    this.membership.onChange((old, now) => this.onNode(old, now));
    this.deployments.on((type, obj) => this.onOwned(KIND_DEPLOYMENT_GRID, DEPLOYMENTS, type, obj));
    this.statefulSets.on((type, obj) => this.onOwned(KIND_STATEFULSET_GRID, STATEFULSETS, type, obj));
    this.services.on((type, obj) => this.onOwned(KIND_SERVICE_GRID, SERVICES, type, obj));
    this.endpointSlices.on((_type, obj) => this.queueOwner(KIND_SERVICE_GRID, obj));
    this.pods.on((type, pod, old) => {
      // Only where a pod runs can make it misplaced; its status changes do not.
      if (type === 'update' && old?.spec?.nodeName === pod.spec?.nodeName) return;
      // A StatefulSetGrid's pods carry the same labels; misplaced pods are a DeploymentGrid check.
      const owner = (pod.metadata?.ownerReferences as { kind?: string; controller?: boolean }[] | undefined)?.find((r) => r.controller);
      if (owner?.kind === 'StatefulSet') return;
      this.queueOwner(KIND_DEPLOYMENT_GRID, pod);
    });
  }

  private onGrid(kind: string, type: string, obj: KubeObject, old?: KubeObject): void {
    this.ctx.statuses.seen(obj, type === 'delete');
    const key = gridKey(kind, obj.metadata!.namespace!, obj.metadata!.name!);
    const was = type === 'add' ? undefined : (type === 'delete' ? obj : old)?.spec?.gridUniqKey;
    const is = type === 'delete' ? undefined : obj.spec?.gridUniqKey;
    if (was !== is) this.countGridKeys(was as string | undefined, is as string | undefined);
    if (type === 'delete') {
      this.forgetGrid(key, obj.metadata?.uid);
    } else if (
      // Our own status writes come back as updates with the same generation: nothing to do.
      type === 'update' &&
      old &&
      old.metadata?.generation === obj.metadata?.generation &&
      !!old.metadata?.deletionTimestamp === !!obj.metadata?.deletionTimestamp
    ) {
      return;
    }
    this.queue.add(key);
  }

  private forgetGrid(key: string, uid: string | undefined): void {
    this.unitCounts.delete(key);
    this.ctx.recorder.forget(uid);
    this.ctx.drift.forgetGrid(uid);
    this.updateBlocked(key, []);
  }

  /** A grid left label key `was` for `is`: the keys of all grids are grouped by value in the node membership. */
  private countGridKeys(was: string | undefined, is: string | undefined): void {
    let changed = false;
    if (was) {
      const n = (this.gridKeys.get(was) ?? 1) - 1;
      if (n > 0) this.gridKeys.set(was, n);
      else changed = this.gridKeys.delete(was);
    }
    if (is) {
      const n = this.gridKeys.get(is) ?? 0;
      this.gridKeys.set(is, n + 1);
      changed ||= n === 0;
    }
    if (changed) this.membership.indexKeys('grids', new Set(this.gridKeys.keys()));
  }

  /**
   * A node's unit label changes matter to every grid keyed on that label. Only changes of labels,
   * readiness or presence get here, not the heartbeats that make most Node events.
   */
  private onNode(old: NodeView | undefined, now: NodeView | undefined): void {
    const before = old?.labels ?? {};
    const after = now?.labels ?? {};
    // Readiness, other labels: no grid's units change, and no pass over the grids is needed.
    if (![...this.gridKeys.keys()].some((key) => before[key] !== after[key])) return;
    for (const [kind, { grids }] of this.kinds) {
      for (const g of grids.list()) {
        const key = g.spec?.gridUniqKey as string | undefined;
        if (key && before[key] !== after[key]) this.queue.add(gridKey(kind, g.metadata!.namespace!, g.metadata!.name!));
      }
    }
  }

  private onOwned(kind: Kind, resource: Resource, type: string, obj: KubeObject): void {
    const ref = objectRef(resource, obj.metadata!.namespace!, obj.metadata!.name!);
    const version = type === 'delete' ? undefined : obj.metadata?.resourceVersion;
    if (version) this.ctx.drift.seen(obj);
    // The echo of our own create or apply: the sync that wrote it already read this very version
    // (the write's response) into the grid's status, so syncing again would only re-render and
    // compare every unit of the grid to find nothing to do.
    const echo = this.ctx.written.isOwnWrite(ref, version);
    this.ctx.written.seen(ref, version);
    if (echo) return;
    // Delivered while a sync writes this object: handled below once the write answers, unless it
    // was that write's echo.
    if (type !== 'delete' && this.ctx.written.heldDuringWrite(ref, version, () => this.queueOwner(kind, obj))) return;
    if (type === 'delete') {
      this.ctx.drift.forget(obj.metadata?.uid);
      // A name another grid's object held is free now: the grids that wanted it can take it.
      this.unblocked(ref);
    }
    this.queueOwner(kind, obj);
  }

  private queueOwner(kind: Kind, obj: KubeObject): void {
    const grid = obj.metadata?.labels?.[LABEL_GRID];
    if (grid) this.queue.add(gridKey(kind, obj.metadata!.namespace!, grid));
  }

  /** The object holding `ref` went away or changed hands: sync the grids it blocked now. */
  private unblocked(ref: string): void {
    this.ctx.failures.clear(ref);
    for (const key of this.blockedGrids.get(ref) ?? []) this.queue.add(key);
  }

  /** Records what blocks a grid after its sync; watches foreign blockers while they block anyone. */
  private updateBlocked(key: string, blocked: Blocked[]): void {
    const now = new Set(blocked.map((b) => b.ref));
    for (const ref of this.blocking.get(key) ?? []) {
      if (now.has(ref)) continue;
      const grids = this.blockedGrids.get(ref);
      grids?.delete(key);
      if (grids?.size === 0) {
        this.blockedGrids.delete(ref);
        this.blockers.unwatch(ref);
      }
    }
    if (now.size === 0) this.blocking.delete(key);
    else this.blocking.set(key, now);
    for (const b of blocked) {
      let grids = this.blockedGrids.get(b.ref);
      if (!grids) this.blockedGrids.set(b.ref, (grids = new Set()));
      grids.add(key);
      // Objects of other grids are in the labelled caches, whose delete events cover them.
      if (!b.blocker.metadata?.labels?.[LABEL_GRID]) this.blockers.watch(b.ref, b.resource, b.blocker);
    }
  }

  async start(): Promise<void> {
    for (const i of this.informers) i.start();
    await Promise.all(this.informers.map((i) => i.synced));
    this.log.info(
      { grids: this.deploymentGrids.size + this.serviceGrids.size + this.statefulSetGrids.size, nodes: this.nodes.size },
      'caches synced',
    );
    this.resyncAll();
    for (let i = 0; i < (this.opts.workers ?? DEFAULT_WORKERS); i++)
      this.workers.push(
        this.work().catch((err) => {
          this.deadWorkers++;
          this.log.error({ err }, 'worker died');
        }),
      );
    this.started = true;
    const period = this.opts.resyncPeriodMs ?? 0;
    if (period > 0) {
      this.resyncTimer = setInterval(() => this.resyncAll(), period);
      this.resyncTimer.unref();
    }
  }

  /** Queues every grid in the caches (a resync: makes no write when nothing changed). */
  resyncAll(): void {
    for (const [kind, { grids }] of this.kinds)
      for (const g of grids.list()) this.queue.add(gridKey(kind, g.metadata!.namespace!, g.metadata!.name!));
  }

  /** Resolves once the queue is empty, no worker is busy and every event is posted. */
  async waitIdle(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.queue.idle()) {
      if (Date.now() > deadline) throw new Error('controller did not become idle');
      await new Promise((r) => setTimeout(r, 20));
    }
    await this.ctx.recorder.flushed();
  }

  /** Number of foreign objects watched because they block a grid. */
  get blockerWatches(): number {
    return this.blockers.size;
  }

  unitTotals(): { kind: string; total: number; ready: number }[] {
    const sums = new Map<string, { total: number; ready: number }>([...this.kinds.keys()].map((k) => [k, { total: 0, ready: 0 }]));
    for (const [key, c] of this.unitCounts) {
      const s = sums.get(key.split('/')[0]!)!;
      s.total += c.total;
      s.ready += c.ready;
    }
    return [...sums].map(([kind, s]) => ({ kind, ...s }));
  }

  /**
   * Liveness: what is broken beyond repair by waiting (a worker loop that ended, a cache whose
   * list/watch has failed for longer than `watchGraceMs`); empty when healthy.
   */
  problems(watchGraceMs: number, now = Date.now()): string[] {
    const out: string[] = [];
    if (this.stopping) return out;
    if (this.deadWorkers) out.push(`${this.deadWorkers} of ${this.workers.length} workers died`);
    for (const i of this.informers) {
      const p = i.problem(now, watchGraceMs);
      if (p) out.push(`${i.name}: ${p}`);
    }
    return out;
  }

  /** Readiness: caches synced and every list/watch currently succeeding. */
  ready(): boolean {
    return this.started && !this.informers.some((i) => i.failing);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.queue.shutdown();
    for (const i of this.informers) i.stop();
    this.blockers.stop();
    await Promise.all(this.workers);
    await Promise.all(this.trailing);
    await this.ctx.recorder.flushed();
  }

  /**
   * A worker takes a key and syncs it until its objects are written; the rest of that sync (its
   * status write and events) goes on without the worker, which takes the next key meanwhile. So
   * a change touching many grids (a new unit) has their objects written first, and the status
   * writes trail. The key stays in processing until its sync has finished: never two syncs of one
   * grid at once.
   */
  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      await this.nextStart();
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      const run = this.reconcile(key, release).finally(() => {
        release();
        this.trailing.delete(run);
      });
      this.trailing.add(run);
      await released;
      // Bounds the syncs held in memory.
      while (this.trailing.size >= MAX_TRAILING_SYNCS) await Promise.race(this.trailing);
    }
  }

  /**
   * Resolves one turn of the event loop after the previous sync start. Node's HTTP/2 session
   * sends what requests queued once the current turn ends; a change that wakes every worker at
   * once (a new unit queues 100 grids) would otherwise compute 64 syncs before the first of their
   * writes left, ~100 ms on the image's runtime. One start per turn lets each write go out while
   * the next sync computes.
   */
  private nextStart(): Promise<void> {
    const start = this.lastStart.then(() => new Promise<void>((r) => setImmediate(r)));
    this.lastStart = start;
    return start;
  }

  private async reconcile(key: string, objectsWritten: () => void): Promise<void> {
    const kind = key.split('/')[0]!;
    const started = process.hrtime.bigint();
    let result: 'success' | 'error' = 'success';
    try {
      const { retry, requeueAfterMs } = await this.sync(key, objectsWritten);
      if (retry) {
        // Some unit failed (reported in status): an error in controller-runtime's terms.
        result = 'error';
        this.queue.addRateLimited(key);
      } else {
        this.queue.forget(key);
        if (requeueAfterMs) this.queue.addAfter(key, requeueAfterMs);
      }
    } catch (err) {
      result = 'error';
      const delay = this.queue.addRateLimited(key);
      this.log.error({ err, grid: key.slice(kind.length + 1), kind, retryInMs: delay }, 'reconcile failed');
    } finally {
      this.queue.done(key);
      this.opts.metrics?.reconciled(kind.toLowerCase(), result, Number(process.hrtime.bigint() - started) / 1e9);
    }
  }

  /** One level-triggered sync of a grid key. */
  private async sync(key: string, objectsWritten: () => void): Promise<{ retry: boolean; requeueAfterMs?: number }> {
    const [kind, namespace, name] = key.split('/') as [string, string, string];
    const entry = this.kinds.get(kind)!;
    const obj = entry.grids.get(namespace, name);
    // Gone or going: the garbage collector removes what it owned.
    if (!obj || obj.metadata?.deletionTimestamp) {
      this.forgetGrid(key, obj?.metadata?.uid);
      return { retry: false };
    }
    // The status is what the grid holds: our last write until the cache shows it. Condition times
    // and the rollout's progress are carried over from it.
    const grid = { ...obj, kind, status: this.ctx.statuses.held(obj) } as GridObject;
    const result = await syncGrid(this.ctx, entry.parts, grid, this.membership.values(grid.spec?.gridUniqKey), objectsWritten);
    this.unitCounts.set(key, { total: result.totalUnits, ready: result.readyUnits });
    this.updateBlocked(key, result.blocked);
    return result;
  }
}
