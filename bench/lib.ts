// What the benchmarks share: raw HTTP(S) to the apiserver and to the program under test, a watch
// stream that timestamps each event on arrival, process CPU/RSS from /proc, and starting the
// program under test from a command template (so a peer implementation runs on the same harness).
import { readFileSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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
  closed = false;
  readonly opened: Promise<void>;
  constructor(e: Endpoint, path: string, onEvent: (ev: WatchEvent) => void) {
    this.opened = new Promise((resolve, reject) => {
      const req = open(e, 'GET', path, { accept: 'application/json' }, (res) => {
        this.res = res;
        if (res.statusCode !== 200) {
          reject(new Error(`watch ${path}: ${res.statusCode}`));
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
        res.on('close', () => (this.closed = true));
        resolve();
      });
      req.on('error', reject);
      req.end();
    });
  }
  close() {
    this.res?.destroy();
  }
}

export function procStats(pid: number): { rssMiB: number; cpuSeconds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime
  return { rssMiB: rss, cpuSeconds: ticks / 100 };
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
}

function fill(template: string, vars: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (m, k: string) => vars[k] ?? m);
}

// The wrapper as its DaemonSet runs it (examples/install/wrapper.yaml), Node flags included.
export const DEFAULT_WRAPPER_CMD = `${process.execPath} --max-semi-space-size=1 ${join(root, 'wrapper/main.ts')} --listen={listen} --node-name={node} --kubeconfig={kubeconfig} --metrics-bind-address={metrics} --state-dir={state} --log-level=warn`;
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

/** Starts a controller from a command template ({kubeconfig} {metrics} {resync} are filled in). */
export async function startControllerUnderTest(
  cluster: Cluster,
  o: { cmd?: string; kubeconfig: string; resync?: string },
): Promise<ProgramUnderTest> {
  const metricsPort = await freePort();
  const cmd = fill(o.cmd ?? DEFAULT_CONTROLLER_CMD, {
    kubeconfig: o.kubeconfig,
    metrics: `127.0.0.1:${metricsPort}`,
    resync: o.resync ?? '10m',
  });
  const c = cluster.startProcess('controller-under-test', 'sh', ['-c', `exec ${cmd}`]);
  const url = `http://127.0.0.1:${metricsPort}`;
  await new Promise((r) => setTimeout(r, 300));
  if (!c.isRunning()) throw new Error(`controller exited: ${c.tail()}`);
  return { url, pid: c.child.pid, metricsUrl: `${url}/metrics` };
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
