// What the benchmarks share: raw HTTP(S) to the apiserver and to the program under test, a watch
// stream that timestamps each event on arrival, process CPU/RSS from /proc, and starting the
// program under test from a command template (so a peer implementation runs on the same harness).
import { readFileSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ANNOTATION_TOPOLOGY_KEYS, ANNOTATION_TOPOLOGY_KEYS_SUPEREDGE } from '../controllers/api/v1alpha1.ts';
import { type Cluster, freePort } from '../test/cluster/cluster.ts';
import { waitFor } from '../test/cluster/processes.ts';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface Endpoint {
  /** Base URL: the apiserver (https, admin credentials) or a plain-HTTP program. */
  url: string;
  tls?: { ca: string; cert: string; key: string };
}

export function apiserverEndpoint(cluster: Cluster): Endpoint {
  return { url: cluster.server, tls: cluster.adminTLS };
}

const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 64 });
const agents = new Map<string, HttpsAgent>();
function agentFor(e: Endpoint) {
  if (!e.tls) return httpAgent;
  let a = agents.get(e.url);
  if (!a) agents.set(e.url, (a = new HttpsAgent({ keepAlive: true, maxSockets: 64, ...e.tls })));
  return a;
}

function open(e: Endpoint, method: string, path: string, headers: Record<string, string>, cb: (res: IncomingMessage) => void) {
  const u = new URL(path, e.url);
  const opts = { method, host: u.hostname, port: u.port, path: u.pathname + u.search, headers, agent: agentFor(e) };
  return e.tls ? httpsRequest(opts, cb) : httpRequest(opts, cb);
}

export function request(
  e: Endpoint,
  method: string,
  path: string,
  body?: unknown,
  contentType = 'application/json',
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = open(e, method, path, { accept: 'application/json', ...(payload ? { 'content-type': contentType } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

export async function requestOk<T = unknown>(e: Endpoint, method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
  const r = await request(e, method, path, body, contentType);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.body.slice(0, 300)}`);
  return JSON.parse(r.body) as T;
}

export interface WatchEvent {
  type: string;
  // biome-ignore lint/suspicious/noExplicitAny: raw API objects
  object: any;
  at: number;
}

/** A watch whose every event is timestamped (performance.now()) as its line is parsed. */
export class WatchStream {
  private res: IncomingMessage | undefined;
  private closedByUs = false;
  /** The stream ended (by the server, or by close()). */
  closed = false;
  readonly opened: Promise<void>;
  /** `onEnd` runs when the stream ends, whoever ended it, unless close() did. */
  constructor(e: Endpoint, path: string, onEvent: (ev: WatchEvent) => void, onEnd?: () => void) {
    this.opened = new Promise((resolve, reject) => {
      const req = open(e, 'GET', path, { accept: 'application/json' }, (res) => {
        this.res = res;
        if (res.statusCode !== 200) {
          this.closed = true;
          res.resume();
          reject(Object.assign(new Error(`watch ${path}: ${res.statusCode}`), { status: res.statusCode }));
          return;
        }
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          const at = performance.now();
          buf += chunk;
          let nl = buf.indexOf('\n');
          while (nl >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (line) {
              const ev = JSON.parse(line);
              onEvent({ type: ev.type, object: ev.object, at });
            }
            nl = buf.indexOf('\n');
          }
        });
        res.on('close', () => {
          if (this.closed) return;
          this.closed = true;
          if (!this.closedByUs) onEnd?.();
        });
        resolve();
      });
      req.on('error', reject);
      req.end();
    });
  }
  close() {
    this.closedByUs = true;
    this.res?.destroy();
  }
}

/**
 * A path with query parameters; undefined and empty values are left out (a list that carries no
 * resourceVersion must not turn into `resourceVersion=undefined`).
 */
export function withQuery(path: string, params: Record<string, string | number | boolean | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
  const text = q.toString();
  return text ? `${path}${path.includes('?') ? '&' : '?'}${text}` : path;
}

/**
 * Topology annotations (key `zone`) in both spellings, this project's and SuperEdge's, as a Service
 * written for either would carry: a program that honours either one filters these Services.
 */
export const TOPOLOGY_ANNOTATIONS = { [ANNOTATION_TOPOLOGY_KEYS]: '["zone"]', [ANNOTATION_TOPOLOGY_KEYS_SUPEREDGE]: '["zone"]' };

/** kube-proxy's label selector on Services and EndpointSlices. */
export const KUBE_PROXY_SELECTOR = '!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name';

/**
 * A watch that outlives the apiserver ending it (it does under bursts, and at its request timeout):
 * re-opened from the last resourceVersion seen (bookmarks included); when that is too old (410),
 * the collection is listed again and handed to `onRelist`, then watched from the list. Each
 * re-open is counted, so a benchmark can say how often it happened.
 */
export class ResumableWatch {
  reopened = 0;
  relisted = 0;
  private stream: WatchStream | undefined;
  private lastRV: string | undefined;
  private stopped = false;
  private readonly e: Endpoint;
  private readonly path: string;
  private readonly params: Record<string, string | undefined>;
  private readonly onEvent: (ev: WatchEvent) => void;
  // biome-ignore lint/suspicious/noExplicitAny: raw API objects
  private readonly onRelist: (items: any[], at: number) => void;
  readonly opened: Promise<void>;
  constructor(
    e: Endpoint,
    path: string,
    params: Record<string, string | undefined>,
    onEvent: (ev: WatchEvent) => void,
    // biome-ignore lint/suspicious/noExplicitAny: raw API objects
    onRelist: (items: any[], at: number) => void,
  ) {
    this.e = e;
    this.path = path;
    this.params = params;
    this.onEvent = onEvent;
    this.onRelist = onRelist;
    this.opened = this.open();
  }
  private open(): Promise<void> {
    const stream = new WatchStream(
      this.e,
      withQuery(this.path, { ...this.params, watch: 1, allowWatchBookmarks: true, resourceVersion: this.lastRV }),
      (ev) => {
        if (ev.type === 'ERROR') {
          // 410 Expired (or another error): the stream ends; the next open relists.
          if (ev.object?.code === 410) this.lastRV = 'expired';
          return;
        }
        const rv = ev.object?.metadata?.resourceVersion;
        if (rv) this.lastRV = rv;
        if (ev.type !== 'BOOKMARK') this.onEvent(ev);
      },
      () => void this.reopen(),
    );
    this.stream = stream;
    return stream.opened;
  }
  private async reopen(): Promise<void> {
    if (this.stopped) return;
    this.reopened++;
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        if (this.lastRV === 'expired') {
          const list = await requestOk<{ items: unknown[]; metadata: { resourceVersion?: string } }>(
            this.e,
            'GET',
            withQuery(this.path, this.params),
          );
          this.relisted++;
          this.lastRV = list.metadata.resourceVersion;
          this.onRelist(list.items, performance.now());
        }
        await this.open();
        return;
      } catch (err) {
        if ((err as { status?: number }).status === 410) this.lastRV = 'expired';
        await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** attempt)));
      }
    }
  }
  close() {
    this.stopped = true;
    this.stream?.close();
  }
}

export function procStats(pid: number): { rssMiB: number; cpuSeconds: number } {
  // RSS from smaps_rollup, not VmRSS of /proc/<pid>/status: the kernel keeps the latter in
  // per-CPU counters and documents it as inaccurate (proc(5)); a controller whose smaps_rollup
  // said 76.4 MiB showed 81.8 MiB there at the same moment.
  const rss = residentParts(pid).rssMiB;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime
  return { rssMiB: rss, cpuSeconds: ticks / 100 };
}

/**
 * Where a process's resident memory is (`/proc/<pid>/smaps_rollup`), in MiB: anonymous (heaps,
 * stacks: the process's own) and file-backed (the pages of its executable and libraries it
 * touched, shared with every process mapping the same files).
 */
export function residentParts(pid: number): { rssMiB: number; anonymousMiB: number; fileMiB: number } {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? 0);
  const rss = kib('Rss') / 1024;
  const anonymous = kib('Anonymous') / 1024;
  return { rssMiB: rss, anonymousMiB: anonymous, fileMiB: rss - anonymous };
}

/** CPU use of a process over `ms`, as a fraction of one core. */
export async function cpuOver(pid: number, ms: number): Promise<number> {
  const a = procStats(pid).cpuSeconds;
  const t = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  return (procStats(pid).cpuSeconds - a) / ((performance.now() - t) / 1000);
}

export interface ProgramUnderTest {
  url: string;
  pid?: number;
  metricsUrl?: string;
  /** The last lines of its log, to explain a failure. */
  tail?: () => string;
  isRunning?: () => boolean;
}

/** Whole seconds as a Go duration in its shortest form (`60` → `1m`, `90` → `1m30s`), as Go's time.ParseDuration reads it. */
export function goDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  const text = `${h ? `${h}h` : ''}${m ? `${m}m` : ''}${s ? `${s}s` : ''}`;
  return text || '0s';
}

/** Seconds in a duration written as Go does (`1m30s`, `90s`, `2h`) or as a plain integer of seconds. */
export function parseSeconds(text: string, what: string): number {
  if (/^\d+$/.test(text)) return Number(text);
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (!m || text === '') throw new Error(`${what}: ${JSON.stringify(text)} is not a duration (e.g. 60s, 1m30s, or 90)`);
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

/** A flag's value as a whole number ≥ 0, or an error naming the flag. */
export function wholeNumber(text: string, flag: string): number {
  if (!/^\d+$/.test(text)) throw new Error(`${flag}: expected a whole number ≥ 0, got ${JSON.stringify(text)}`);
  return Number(text);
}

function fill(template: string, vars: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (m, k: string) => vars[k] ?? m);
}

// The wrapper as its DaemonSet runs it (examples/install/wrapper.yaml), Node flags included.
export const DEFAULT_WRAPPER_CMD = `${process.execPath} --max-semi-space-size=1 --no-opt ${join(root, 'wrapper/main.ts')} --listen={listen} --node-name={node} --kubeconfig={kubeconfig} --metrics-bind-address={metrics} --state-dir={state} --log-level=warn`;
export const DEFAULT_CONTROLLER_CMD = `${process.execPath} ${join(root, 'controllers/main.ts')} --kubeconfig={kubeconfig} --metrics-bind-address={metrics} --health-probe-bind-address={metrics} --leader-elect=false --resync-period={resync} --log-level=warn`;

/**
 * Starts a wrapper from a command template ({listen} {node} {kubeconfig} {metrics} {state}, and any of
 * `vars`, are filled in), or uses one already running at `url`. Ready when a list of
 * EndpointSlices answers 200.
 */
export async function startWrapperUnderTest(
  cluster: Cluster,
  o: { cmd?: string; url?: string; nodeName: string; kubeconfig: string; name?: string; vars?: Record<string, string> },
): Promise<ProgramUnderTest> {
  if (o.url) return { url: o.url };
  const [port, metricsPort] = await Promise.all([freePort(), freePort()]);
  const template = o.cmd ?? DEFAULT_WRAPPER_CMD;
  const cmd = fill(template, {
    ...o.vars,
    listen: `127.0.0.1:${port}`,
    port: String(port),
    node: o.nodeName,
    kubeconfig: o.kubeconfig,
    metrics: `127.0.0.1:${metricsPort}`,
    state: join(cluster.dir, `wrapper-state-${o.nodeName}-${port}`),
  });
  const c = cluster.startProcess(o.name ?? `wrapper-${o.nodeName}`, 'sh', ['-c', `exec ${cmd}`]);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    `wrapper at ${url} to serve`,
    async () => ((await request({ url }, 'GET', '/apis/discovery.k8s.io/v1/endpointslices?limit=1')).status === 200 ? true : undefined),
    { components: [c], timeoutMs: 300_000, intervalMs: 50 },
  );
  return { url, pid: c.child.pid, metricsUrl: template.includes('{metrics}') ? `http://127.0.0.1:${metricsPort}/metrics` : undefined };
}

/**
 * Starts a controller from a command template: {kubeconfig}, {metrics} (a loopback address),
 * {resync} (the resync period as a Go duration, e.g. `1m` or `1m30s`) and {resyncSeconds} (the same as an
 * integer number of seconds, for programs that take that form) are filled in.
 */
export async function startControllerUnderTest(
  cluster: Cluster,
  o: { cmd?: string; kubeconfig: string; resyncSeconds: number },
): Promise<ProgramUnderTest> {
  const metricsPort = await freePort();
  const cmd = fill(o.cmd ?? DEFAULT_CONTROLLER_CMD, {
    kubeconfig: o.kubeconfig,
    metrics: `127.0.0.1:${metricsPort}`,
    resync: goDuration(o.resyncSeconds),
    resyncSeconds: String(o.resyncSeconds),
  });
  const c = cluster.startProcess('controller-under-test', 'sh', ['-c', `exec ${cmd}`]);
  const url = `http://127.0.0.1:${metricsPort}`;
  await new Promise((r) => setTimeout(r, 300));
  if (!c.isRunning()) throw new Error(`controller exited: ${c.tail()}`);
  return { url, pid: c.child.pid, metricsUrl: `${url}/metrics`, tail: () => c.tail(), isRunning: () => c.isRunning() };
}

/** Runs `fn` for each i in [0, n) with at most `concurrency` in flight. */
export async function inParallel(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

export function writeJson(path: string | undefined, data: unknown): void {
  if (path) writeFileSync(path, `${JSON.stringify(data, null, 2)}\n`);
}

export const machine = () => {
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
  return `${cpu}, ${readFileSync('/proc/cpuinfo', 'utf8').match(/^processor/gm)?.length ?? '?'} cores, Node ${process.versions.node}`;
};

/**
 * The grids of the controller benchmarks (bench/controllers.ts) and of the write floor measured
 * under them (bench/write-floor.ts): one definition, so both measure the same rendered objects.
 */
export function benchDeploymentGrid(ns: string, name: string, key: string) {
  return {
    apiVersion: 'servicegroup.io/v1alpha1',
    kind: 'DeploymentGrid',
    metadata: { name, namespace: ns },
    spec: {
      gridUniqKey: key,
      template: {
        replicas: 1,
        selector: { matchLabels: { app: name } },
        template: {
          metadata: { labels: { app: name } },
          spec: { containers: [{ name: 'web', image: 'registry.invalid/echo:1', ports: [{ containerPort: 8080 }] }] },
        },
      },
    },
  };
}

export function benchServiceGrid(ns: string, name: string, key: string, app: string) {
  return {
    apiVersion: 'servicegroup.io/v1alpha1',
    kind: 'ServiceGrid',
    metadata: { name, namespace: ns },
    spec: { gridUniqKey: key, template: { selector: { app }, ports: [{ port: 80, targetPort: 8080 }] } },
  };
}
