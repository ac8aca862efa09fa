// Wires informers, the work queue and the two grid syncs. Every event is mapped to the grid keys
// it can affect; a worker syncs one key at a time from the caches (level-triggered).

import type { Logger } from 'pino';
import type { KubeClient } from '../../kube/client.ts';
import { Informer } from '../../kube/informer.ts';
import type { KubeObject } from '../../kube/objects.ts';
import type { ReflectorOptions } from '../../kube/reflector.ts';
import { type DeploymentGrid, KIND_DEPLOYMENT_GRID, KIND_SERVICE_GRID, LABEL_GRID, type ServiceGrid } from '../api/v1alpha1.ts';
import type { ControllerMetrics } from '../metrics.ts';
import { syncDeploymentGrid } from './deploymentgrid.ts';
import { DriftDetector } from './drift.ts';
import {
  DEPLOYMENT_GRIDS,
  DEPLOYMENTS,
  ENDPOINT_SLICES,
  EventRecorder,
  type GridObject,
  NODES,
  type Resource,
  SERVICE_GRIDS,
  SERVICES,
  type SyncContext,
} from './objects.ts';
import { WorkQueue } from './queue.ts';
import { syncServiceGrid } from './servicegrid.ts';

export interface ControllerOptions {
  client: KubeClient;
  log: Logger;
  metrics?: ControllerMetrics;
  /** Name of this replica, for events. */
  instance?: string;
  workers?: number;
  /** Re-sync every grid from the caches this often (0: never). */
  resyncPeriodMs?: number;
  /** A watch silent this long is taken for a dead connection and re-opened (default: the reflector's). */
  watchIdleTimeoutMs?: number;
}

type Kind = typeof KIND_DEPLOYMENT_GRID | typeof KIND_SERVICE_GRID;

function gridKey(kind: Kind, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

export class GridController {
  readonly queue = new WorkQueue();
  private readonly opts: ControllerOptions;
  private readonly log: Logger;
  private readonly ctx: SyncContext;
  readonly deploymentGrids: Informer<KubeObject>;
  readonly serviceGrids: Informer<KubeObject>;
  readonly nodes: Informer<KubeObject>;
  readonly deployments: Informer<KubeObject>;
  readonly services: Informer<KubeObject>;
  readonly endpointSlices: Informer<KubeObject>;
  private readonly informers: Informer<KubeObject>[];
  private resyncTimer?: NodeJS.Timeout;
  private workers: Promise<void>[] = [];
  private readonly unitCounts = new Map<string, { total: number; ready: number }>();

  constructor(opts: ControllerOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.ctx = {
      client: opts.client,
      log: opts.log,
      recorder: new EventRecorder(opts.client, opts.log, opts.instance ?? 'servicegroup-controller'),
      drift: new DriftDetector(),
    };
    const informer = (r: Resource, options: ReflectorOptions = {}) =>
      new Informer<KubeObject>(opts.client, r, opts.log, { watchIdleTimeoutMs: opts.watchIdleTimeoutMs, ...options });
    this.deploymentGrids = informer(DEPLOYMENT_GRIDS);
    this.serviceGrids = informer(SERVICE_GRIDS);
    // Units are node label values: labels are all the controller reads of a Node.
    this.nodes = informer(NODES, { metadataOnly: true });
    // Only labelled objects are cached; a same-name foreign object is found by a GET when needed.
    this.deployments = informer(DEPLOYMENTS, { labelSelector: LABEL_GRID });
    this.services = informer(SERVICES, { labelSelector: LABEL_GRID });
    this.endpointSlices = informer(ENDPOINT_SLICES, { labelSelector: LABEL_GRID });
    this.informers = [this.deploymentGrids, this.serviceGrids, this.nodes, this.deployments, this.services, this.endpointSlices];

    const onGrid = (kind: Kind) => (type: string, obj: KubeObject, old?: KubeObject) => {
      // Our own status writes come back as updates with the same generation: nothing to do.
      if (
        type === 'update' &&
        old &&
        old.metadata?.generation === obj.metadata?.generation &&
        !!old.metadata?.deletionTimestamp === !!obj.metadata?.deletionTimestamp
      )
        return;
      const key = gridKey(kind, obj.metadata!.namespace!, obj.metadata!.name!);
      if (type === 'delete') this.unitCounts.delete(key);
      this.queue.add(key);
    };
    this.deploymentGrids.on(onGrid(KIND_DEPLOYMENT_GRID));
    this.serviceGrids.on(onGrid(KIND_SERVICE_GRID));
    this.nodes.on((type, node, old) => this.onNode(type, node, old));
    const onOwned = (kind: Kind) => (_type: string, obj: KubeObject) => {
      const grid = obj.metadata?.labels?.[LABEL_GRID];
      if (grid) this.queue.add(gridKey(kind, obj.metadata!.namespace!, grid));
    };
    const forget = (type: string, obj: KubeObject) => {
      if (type === 'delete') this.ctx.drift.forget(obj.metadata?.uid);
    };
    this.deployments.on(forget);
    this.services.on(forget);
    this.deployments.on(onOwned(KIND_DEPLOYMENT_GRID));
    this.services.on(onOwned(KIND_SERVICE_GRID));
    this.endpointSlices.on(onOwned(KIND_SERVICE_GRID));
  }

  /** A node's unit label changes matter to every grid keyed on that label. */
  private onNode(type: string, node: KubeObject, old?: KubeObject): void {
    const now = (node.metadata?.labels ?? {}) as Record<string, string>;
    const before = (type === 'update' ? (old?.metadata?.labels ?? {}) : {}) as Record<string, string>;
    const after = type === 'delete' ? {} : now;
    const changed = (key: string) => before[key] !== after[key];
    for (const [inf, kind] of [
      [this.deploymentGrids, KIND_DEPLOYMENT_GRID],
      [this.serviceGrids, KIND_SERVICE_GRID],
    ] as const) {
      for (const g of inf.list()) {
        const key = g.spec?.gridUniqKey as string | undefined;
        if (key && changed(key)) this.queue.add(gridKey(kind, g.metadata!.namespace!, g.metadata!.name!));
        // Endpoint counts of a ServiceGrid depend on which unit a node is in.
      }
    }
  }

  /** Distinct non-empty values of `key` on nodes. */
  unitsFor(key: string): string[] {
    const values = new Set<string>();
    for (const n of this.nodes.list()) {
      const v = n.metadata?.labels?.[key];
      if (v) values.add(v);
    }
    return [...values].sort();
  }

  async start(): Promise<void> {
    for (const i of this.informers) i.start();
    await Promise.all(this.informers.map((i) => i.synced));
    this.log.info({ grids: this.deploymentGrids.size + this.serviceGrids.size, nodes: this.nodes.size }, 'caches synced');
    this.resyncAll();
    for (let i = 0; i < (this.opts.workers ?? 2); i++) this.workers.push(this.work());
    const period = this.opts.resyncPeriodMs ?? 0;
    if (period > 0) {
      this.resyncTimer = setInterval(() => this.resyncAll(), period);
      this.resyncTimer.unref();
    }
  }

  /** Queues every grid in the caches (a resync: makes no write when nothing changed). */
  resyncAll(): void {
    for (const g of this.deploymentGrids.list()) this.queue.add(gridKey(KIND_DEPLOYMENT_GRID, g.metadata!.namespace!, g.metadata!.name!));
    for (const g of this.serviceGrids.list()) this.queue.add(gridKey(KIND_SERVICE_GRID, g.metadata!.namespace!, g.metadata!.name!));
  }

  /** Resolves once the queue is empty and no worker is busy. */
  async waitIdle(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.queue.idle()) {
      if (Date.now() > deadline) throw new Error('controller did not become idle');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  unitTotals(): { kind: string; total: number; ready: number }[] {
    const sums = new Map<string, { total: number; ready: number }>([
      [KIND_DEPLOYMENT_GRID, { total: 0, ready: 0 }],
      [KIND_SERVICE_GRID, { total: 0, ready: 0 }],
    ]);
    for (const [key, c] of this.unitCounts) {
      const s = sums.get(key.split('/')[0]!)!;
      s.total += c.total;
      s.ready += c.ready;
    }
    return [...sums].map(([kind, s]) => ({ kind, ...s }));
  }

  async stop(): Promise<void> {
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.queue.shutdown();
    for (const i of this.informers) i.stop();
    await Promise.all(this.workers);
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      const kind = key.split('/')[0]!;
      const started = process.hrtime.bigint();
      let result = 'success';
      try {
        const retry = await this.sync(key);
        if (retry) {
          result = 'retry';
          this.opts.metrics?.reconcileErrors.inc({ kind });
          this.queue.addRateLimited(key);
        } else {
          this.queue.forget(key);
        }
      } catch (err) {
        result = 'error';
        this.opts.metrics?.reconcileErrors.inc({ kind });
        const delay = this.queue.addRateLimited(key);
        this.log.error({ err, grid: key.slice(kind.length + 1), kind, retryInMs: delay }, 'reconcile failed');
      } finally {
        this.queue.done(key);
        this.opts.metrics?.reconciles.inc({ kind, result });
        this.opts.metrics?.reconcileDuration.observe({ kind }, Number(process.hrtime.bigint() - started) / 1e9);
      }
    }
  }

  /** One level-triggered sync of a grid key. Returns true when it should be retried. */
  private async sync(key: string): Promise<boolean> {
    const [kind, namespace, name] = key.split('/') as [Kind, string, string];
    const inf = kind === KIND_DEPLOYMENT_GRID ? this.deploymentGrids : this.serviceGrids;
    const obj = inf.get(namespace, name);
    // Gone or going: the garbage collector removes what it owned.
    if (!obj || obj.metadata?.deletionTimestamp) {
      this.unitCounts.delete(key);
      return false;
    }
    const grid = { ...obj, kind } as GridObject;
    const units = this.unitsFor(grid.spec?.gridUniqKey);
    if (kind === KIND_DEPLOYMENT_GRID) {
      const { status, retry } = await syncDeploymentGrid(this.ctx, grid as DeploymentGrid & GridObject, units, this.deployments);
      this.unitCounts.set(key, { total: status.totalUnits ?? 0, ready: status.readyUnits ?? 0 });
      return retry;
    }
    const { status, retry } = await syncServiceGrid(this.ctx, grid as ServiceGrid & GridObject, units, this);
    this.unitCounts.set(key, { total: status.totalUnits ?? 0, ready: status.readyUnits ?? 0 });
    return retry;
  }
}
