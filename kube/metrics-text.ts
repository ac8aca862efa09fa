// The Prometheus text exposition format (version 0.0.4), for programs that keep their numbers
// themselves instead of loading a metrics library: label values and help text escaped as the
// format requires, so a value holding `"`, `\` or a newline cannot break a scrape.

export const TEXT_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type Labels = Readonly<Record<string, string>>;
export type MetricType = 'counter' | 'gauge';

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** `{a="x",b="y"}` with names in a stable order, or '' without labels. Throws on an invalid label name. */
export function formatLabels(labels: Labels): string {
  const names = Object.keys(labels).sort();
  if (!names.length) return '';
  for (const n of names) if (!LABEL_NAME.test(n)) throw new Error(`invalid Prometheus label name ${JSON.stringify(n)}`);
  return `{${names.map((n) => `${n}="${escapeLabelValue(labels[n]!)}"`).join(',')}}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** One series' value; hot paths keep the handle instead of formatting labels on every update. */
export interface Sample {
  value: number;
}

/**
 * Families of series keyed by their formatted labels, rendered in insertion order. A series is
 * found again by the same labels whatever their order.
 */
export class MetricFamilies {
  private readonly families = new Map<string, { help: string; type: MetricType; series: Map<string, Sample> }>();

  /** The series of `name` with `labels`, created at 0 (the family with it) on first use. */
  sample(name: string, type: MetricType, help: string, labels: Labels = {}): Sample {
    let f = this.families.get(name);
    if (!f) {
      if (!METRIC_NAME.test(name)) throw new Error(`invalid Prometheus metric name ${JSON.stringify(name)}`);
      this.families.set(name, (f = { help, type, series: new Map() }));
    }
    const key = formatLabels(labels);
    let sample = f.series.get(key);
    if (!sample) f.series.set(key, (sample = { value: 0 }));
    return sample;
  }

  add(name: string, type: MetricType, help: string, labels: Labels, delta: number): void {
    this.sample(name, type, help, labels).value += delta;
  }

  set(name: string, type: MetricType, help: string, labels: Labels, value: number): void {
    this.sample(name, type, help, labels).value = value;
  }

  get(name: string, labels: Labels = {}): number | undefined {
    return this.families.get(name)?.series.get(formatLabels(labels))?.value;
  }

  render(): string {
    const out: string[] = [];
    for (const [name, f] of this.families) {
      out.push(`# HELP ${name} ${escapeHelp(f.help)}`, `# TYPE ${name} ${f.type}`);
      for (const [labels, s] of f.series) out.push(`${name}${labels} ${formatValue(s.value)}`);
    }
    return `${out.join('\n')}\n`;
  }
}
