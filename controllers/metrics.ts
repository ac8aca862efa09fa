// The controller's Prometheus metrics, under the names stock dashboards already query: client-go's
// workqueue, leader-election and REST client metrics, controller-runtime's reconcile metrics, and
// prom-client's process and Node.js runtime metrics (memory, CPU, event-loop delay). Only what
// has no standard name is `servicegroup_*`.

import { createRequire } from 'node:module';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * prom-client's default metrics but its GC histogram (nodejs_gc_duration_seconds). That one is a
 * PerformanceObserver of GC entries, and Node builds each GC entry with deprecated accessors (four
 * util.deprecate wrappers per collection, ~50 µs with the observer's callback): with the small
 * young generation the image runs with, a convergence round makes thousands of collections. And
 * prom-client observes only the first entry of each batch Node delivers, so the histogram held a
 * small fraction of the collections (59 of ~1,800 in a burst of allocations): a cost for a figure
 * that could not be read. Heap sizes and event-loop lag stay.
 */
function collectDefaultMetricsButGc(register: Registry): void {
  const require = createRequire(import.meta.url);
  const config = { register, eventLoopMonitoringPrecision: 10 };
  for (const name of collectDefaultMetrics.metricsList) {
    if (name === 'gc') continue;
    // One file per metric in the package, named as in metricsList (what collectDefaultMetrics itself loads).
    const collect = require(`prom-client/lib/metrics/${name}.js`) as (r: Registry, c: typeof config) => void;
    collect(register, config);
  }
}

/** client-go's workqueue latency buckets: 10 ns to 10 s, a decade apart. */
const WORKQUEUE_BUCKETS = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 10];
/** controller-runtime's reconcile time buckets. */
const RECONCILE_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 4.5,
  5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];

/** What a work queue reports (the hooks of client-go's workqueue metrics provider). */
export interface WorkQueueMetrics {
  added(): void;
  /** A key left the queue for a worker after waiting this long. */
  started(waitedSeconds: number): void;
  /** A worker finished a key after working this long. */
  finished(workedSeconds: number): void;
  retried(): void;
}

export interface ControllerMetricsSources {
  queueDepth: () => number;
  units: () => { kind: string; total: number; ready: number }[];
}

export type ReconcileResult = 'success' | 'error';

export class ControllerMetrics {
  readonly registry = new Registry();
  private readonly restRequests: Counter<'code' | 'method' | 'host'>;
  private readonly leaderStatus: Gauge<'name'>;
  private readonly reconcileTotal: Counter<'controller' | 'result'>;
  private readonly reconcileErrors: Counter<'controller'>;
  private readonly reconcileTime: Histogram<'controller'>;
  readonly workqueue: WorkQueueMetrics;

  constructor(sources: ControllerMetricsSources, opts: { queueName: string }) {
    const registers = [this.registry];
    collectDefaultMetricsButGc(this.registry);
    const name = { name: opts.queueName };

    new Gauge({
      name: 'workqueue_depth',
      help: 'Current depth of workqueue',
      labelNames: ['name'],
      registers,
      collect() {
        this.set(name, sources.queueDepth());
      },
    });
    const adds = new Counter({
      name: 'workqueue_adds_total',
      help: 'Total number of adds handled by workqueue',
      labelNames: ['name'],
      registers,
    });
    const queueDuration = new Histogram({
      name: 'workqueue_queue_duration_seconds',
      help: 'How long in seconds an item stays in workqueue before being requested.',
      labelNames: ['name'],
      buckets: WORKQUEUE_BUCKETS,
      registers,
    });
    const workDuration = new Histogram({
      name: 'workqueue_work_duration_seconds',
      help: 'How long in seconds processing an item from workqueue takes.',
      labelNames: ['name'],
      buckets: WORKQUEUE_BUCKETS,
      registers,
    });
    const retries = new Counter({
      name: 'workqueue_retries_total',
      help: 'Total number of retries handled by workqueue',
      labelNames: ['name'],
      registers,
    });
    // Series exist from the start, at 0, as client-go's do: dashboards see the queue before its first add.
    adds.inc(name, 0);
    retries.inc(name, 0);
    this.workqueue = {
      added: () => adds.inc(name),
      started: (s) => queueDuration.observe(name, s),
      finished: (s) => workDuration.observe(name, s),
      retried: () => retries.inc(name),
    };

    this.leaderStatus = new Gauge({
      name: 'leader_election_master_status',
      help: 'Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master.',
      labelNames: ['name'],
      registers,
    });
    this.restRequests = new Counter({
      name: 'rest_client_requests_total',
      help: 'Number of HTTP requests, partitioned by status code, method, and host.',
      labelNames: ['code', 'method', 'host'],
      registers,
    });
    this.reconcileTotal = new Counter({
      name: 'controller_runtime_reconcile_total',
      help: 'Total number of reconciliations per controller',
      labelNames: ['controller', 'result'],
      registers,
    });
    this.reconcileErrors = new Counter({
      name: 'controller_runtime_reconcile_errors_total',
      help: 'Total number of reconciliation errors per controller',
      labelNames: ['controller'],
      registers,
    });
    this.reconcileTime = new Histogram({
      name: 'controller_runtime_reconcile_time_seconds',
      help: 'Length of time per reconciliation per controller',
      labelNames: ['controller'],
      buckets: RECONCILE_BUCKETS,
      registers,
    });

    new Gauge({
      name: 'servicegroup_units',
      help: 'NodeUnits rendered, by grid kind.',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        for (const u of sources.units()) this.set({ kind: u.kind }, u.total);
      },
    });
    new Gauge({
      name: 'servicegroup_ready_units',
      help: 'NodeUnits whose objects are ready, by grid kind.',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        for (const u of sources.units()) this.set({ kind: u.kind }, u.ready);
      },
    });
  }

  /** One answer (or failure: code `<error>`, as client-go counts it) of the API client. */
  request(method: string, code: number | undefined, host: string): void {
    this.restRequests.inc({ code: code === undefined ? '<error>' : String(code), method, host });
  }

  leader(lease: string, leading: boolean): void {
    this.leaderStatus.set({ name: lease }, leading ? 1 : 0);
  }

  /** One reconcile of a grid by `controller` (the lower-case kind, as controller-runtime names controllers). */
  reconciled(controller: string, result: ReconcileResult, seconds: number): void {
    this.reconcileTotal.inc({ controller, result });
    if (result === 'error') this.reconcileErrors.inc({ controller });
    this.reconcileTime.observe({ controller }, seconds);
  }

  /** Declares a controller's series at 0, so rates and alerts work before its first reconcile. */
  declareController(controller: string): void {
    for (const result of ['success', 'error'] as const) this.reconcileTotal.inc({ controller, result }, 0);
    this.reconcileErrors.inc({ controller }, 0);
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
