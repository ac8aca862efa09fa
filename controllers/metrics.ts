// Prometheus metrics in the text exposition format, kept to what the controllers need: counters,
// gauges and histograms with labels.

type Labels = Record<string, string>;

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return keys.map((k) => `${k}="${String(labels[k]).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`).join(',');
}

interface Metric {
  render(): string;
}

export class Counter implements Metric {
  private readonly values = new Map<string, number>();
  readonly name: string;
  readonly help: string;
  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }
  inc(labels: Labels = {}, by = 1): void {
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [k, v] of this.values) lines.push(`${this.name}${k ? `{${k}}` : ''} ${v}`);
    return lines.join('\n');
  }
}

export class Gauge implements Metric {
  private readonly values = new Map<string, number>();
  private collect?: () => void;
  readonly name: string;
  readonly help: string;
  constructor(name: string, help: string, collect?: (g: Gauge) => void) {
    this.name = name;
    this.help = help;
    if (collect) this.collect = () => collect(this);
  }
  set(labels: Labels, value: number): void {
    this.values.set(labelKey(labels), value);
  }
  reset(): void {
    this.values.clear();
  }
  render(): string {
    this.collect?.();
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    for (const [k, v] of this.values) lines.push(`${this.name}${k ? `{${k}}` : ''} ${v}`);
    return lines.join('\n');
  }
}

export class Histogram implements Metric {
  private readonly series = new Map<string, { buckets: number[]; sum: number; count: number }>();
  readonly name: string;
  readonly help: string;
  readonly bounds: number[];
  constructor(name: string, help: string, bounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]) {
    this.name = name;
    this.help = help;
    this.bounds = bounds;
  }
  observe(labels: Labels, value: number): void {
    const k = labelKey(labels);
    let s = this.series.get(k);
    if (!s) this.series.set(k, (s = { buckets: this.bounds.map(() => 0), sum: 0, count: 0 }));
    this.bounds.forEach((b, i) => {
      if (value <= b) s.buckets[i]!++;
    });
    s.sum += value;
    s.count++;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [k, s] of this.series) {
      const pre = k ? `${k},` : '';
      for (const [i, b] of this.bounds.entries()) lines.push(`${this.name}_bucket{${pre}le="${b}"} ${s.buckets[i]}`);
      lines.push(`${this.name}_bucket{${pre}le="+Inf"} ${s.count}`);
      lines.push(`${this.name}_sum${k ? `{${k}}` : ''} ${s.sum}`);
      lines.push(`${this.name}_count${k ? `{${k}}` : ''} ${s.count}`);
    }
    return lines.join('\n');
  }
}

export class Registry {
  private readonly metrics: Metric[] = [];
  register<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }
  render(): string {
    return `${this.metrics.map((m) => m.render()).join('\n')}\n`;
  }
}

/** The controller's metrics. */
export class ControllerMetrics {
  readonly registry = new Registry();
  readonly reconciles = this.registry.register(new Counter('servicegroup_reconcile_total', 'Grid reconciles by kind and result.'));
  readonly reconcileErrors = this.registry.register(
    new Counter('servicegroup_reconcile_errors_total', 'Grid reconciles that failed and were retried.'),
  );
  readonly reconcileDuration = this.registry.register(
    new Histogram('servicegroup_reconcile_duration_seconds', 'Time of one grid reconcile.'),
  );
  readonly writes = this.registry.register(new Counter('servicegroup_api_writes_total', 'Write requests sent to the apiserver, by verb.'));
  readonly queueDepth: Gauge;
  readonly units: Gauge;
  readonly readyUnits: Gauge;
  readonly isLeader = this.registry.register(new Gauge('servicegroup_leader', '1 while this replica holds the leader lease.'));

  constructor(collect: { queueDepth: () => number; units: () => { kind: string; total: number; ready: number }[] }) {
    this.queueDepth = this.registry.register(
      new Gauge('servicegroup_workqueue_depth', 'Grid keys waiting to be reconciled.', (g) => g.set({}, collect.queueDepth())),
    );
    this.units = this.registry.register(
      new Gauge('servicegroup_units', 'NodeUnits rendered, by grid kind.', (g) => {
        g.reset();
        for (const u of collect.units()) g.set({ kind: u.kind }, u.total);
      }),
    );
    this.readyUnits = this.registry.register(
      new Gauge('servicegroup_ready_units', 'NodeUnits ready, by grid kind.', (g) => {
        g.reset();
        for (const u of collect.units()) g.set({ kind: u.kind }, u.ready);
      }),
    );
    this.isLeader.set({}, 0);
  }
}
