// Controller benchmarks 4–6, against the real apiserver (objects only: no kwok, no controller-manager).
//  4. Convergence: N nodes with N distinct `zone` values; a DeploymentGrid and a ServiceGrid keyed
//     on zone created together; time from the create responses until all N Deployments, the shared
//     Service and N per-unit Services exist (seen on watches), and the write requests it took.
//     Repeated in a fresh namespace per round (grids and rendered objects deleted in between).
//  5. Steady state: G grids (half DeploymentGrids, half ServiceGrids) × U units of label `site`,
//     settled; then a window of --steady-seconds with the controller started with --resync-period
//     (default 60s, so a window ≥ 60 s holds a forced resync): write requests, CPU and RSS.
//  6. Reaction: a node with a new `site` value appears: time until every grid has its object for it.
// Write requests come from the apiserver's apiserver_request_total, minus the writes this script
// made (counted here); the audit log's per-user split is printed next to them as a cross-check.
// Watches the apiserver ends are re-opened (and counted in the output); every wait is bounded by
// --wait-seconds. For another implementation:
//   --controller-cmd '<template>'  filled in: {kubeconfig}, {metrics} (loopback address),
//                                  {resync} (Go duration, e.g. 1m, 1m30s), {resyncSeconds} (integer)
//   --no-readyz   the program serves no /readyz: it counts as started once a grid created then
//                 (keyed on a label of one node of its own) has its Deployment
//   --no-status   the program writes no grid status of this project's form: waits and figures for
//                 status are left out
//   --units 200 --rounds 3 --grids 100 --steady-units 20 --steady-seconds 120 --resync 60s
//   --reactions 3 --wait-seconds 300 --out f.json
//   --as-image    this project's controller as the image starts it (the image assembled from the
//                 Dockerfile, the install manifest's command, args and env on its plain JavaScript)
//                 rather than the TypeScript sources with the default command; see startAsImage.
import { execFileSync } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Cluster, startCluster, type WriteRequest } from '../test/cluster/cluster.ts';
import { type AssembledImage, assembleImage } from '../test/cluster/dockerfile.ts';
import { CONTROLLER_USER, installCrds, installRbac } from '../test/controllers-helpers.ts';
import { manifestContainer, startContainer } from '../test/image-harness.ts';
import {
  apiserverEndpoint,
  DEFAULT_CONTROLLER_CMD,
  benchDeploymentGrid as deploymentGrid,
  type Endpoint,
  goDuration,
  inParallel,
  machine,
  type ProgramUnderTest,
  parseSeconds,
  procStats,
  ResumableWatch,
  request,
  requestOk,
  residentParts,
  root,
  benchServiceGrid as serviceGrid,
  startControllerUnderTest,
  wholeNumber,
  writeJson,
} from './lib.ts';
import { median, printTable } from './table.ts';

const { values } = parseArgs({
  options: {
    units: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '3' },
    grids: { type: 'string', default: '100' },
    'steady-units': { type: 'string', default: '20' },
    'steady-seconds': { type: 'string', default: '120' },
    resync: { type: 'string', default: '60s' },
    reactions: { type: 'string', default: '3' },
    'wait-seconds': { type: 'string', default: '300' },
    'controller-cmd': { type: 'string' },
    'no-readyz': { type: 'boolean', default: false },
    'no-status': { type: 'boolean', default: false },
    'as-image': { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const count = (flag: 'units' | 'rounds' | 'grids' | 'steady-units' | 'steady-seconds' | 'reactions') =>
  wholeNumber(values[flag]!, `--${flag}`);
const N = {
  units: count('units'),
  rounds: count('rounds'),
  grids: count('grids'),
  steadyUnits: count('steady-units'),
  steadySeconds: count('steady-seconds'),
  resyncSeconds: parseSeconds(values.resync!, '--resync'),
  reactions: count('reactions'),
  waitMs: parseSeconds(values['wait-seconds']!, '--wait-seconds') * 1000,
};
if (N.grids % 2) throw new Error(`--grids: an even number expected (half DeploymentGrids, half ServiceGrids), got ${N.grids}`);
const withStatus = !values['no-status'];
if (values['as-image'] && values['controller-cmd']) throw new Error('--as-image and --controller-cmd: one or the other');

const GRIDS_API = '/apis/servicegroup.io/v1alpha1';
const LABEL_GRID = 'servicegroup.io/grid';
const LABEL_UNIT = 'servicegroup.io/unit';
const STEADY_NS = 'steady';

// ---------------------------------------------------------------------------------------------
// Writes this script makes, so they can be taken out of the apiserver's count.

let api: Endpoint;
let benchWrites = 0;
function write<T = unknown>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
  benchWrites++;
  return requestOk<T>(api, method, path, body, contentType);
}

interface WriteSnapshot {
  apiserver: number;
  bench: number;
  /** Audit log entries (writes) per user. */
  audit: Map<string, number>;
  byResource: Map<string, { n: number; seconds: number }>;
  /** The audit log's write requests at the time. */
  requests: WriteRequest[];
}

/** Per `VERB group/resource[/subresource]`: requests (apiserver_request_total) and seconds spent (apiserver_request_duration_seconds_sum). */
async function requestsByResource(cluster: Cluster): Promise<Map<string, { n: number; seconds: number }>> {
  const out = new Map<string, { n: number; seconds: number }>();
  for (const line of (await cluster.rawGet('/metrics')).split('\n')) {
    const metric = line.startsWith('apiserver_request_total{')
      ? 'n'
      : line.startsWith('apiserver_request_duration_seconds_sum{')
        ? 'seconds'
        : undefined;
    if (!metric) continue;
    const label = (k: string) => new RegExp(`[{,]${k}="([^"]*)"`).exec(line)?.[1] ?? '';
    const verb = label('verb');
    if (verb === 'WATCH' || verb === 'CONNECT') continue;
    const sub = label('subresource');
    const key = `${verb} ${label('group') || 'core'}/${label('resource')}${sub ? `/${sub}` : ''}`;
    const e = out.get(key) ?? { n: 0, seconds: 0 };
    e[metric] += Number(line.slice(line.lastIndexOf(' ') + 1));
    out.set(key, e);
  }
  return out;
}

async function snapshot(cluster: Cluster): Promise<WriteSnapshot> {
  const [apiserver, byResource, entries] = await Promise.all([
    cluster.writeRequestCount(),
    requestsByResource(cluster),
    cluster.writeRequests(),
  ]);
  const audit = new Map<string, number>();
  for (const e of entries) audit.set(e.user, (audit.get(e.user) ?? 0) + 1);
  return { apiserver, bench: benchWrites, audit, byResource, requests: entries };
}

interface WriteFigures {
  /**
   * The figure quoted: apiserver_request_total delta minus the bench's own writes and minus the
   * writes the audit log attributes to neither the bench nor the controller (the apiserver's own).
   */
  controller: number;
  apiserverTotal: number;
  bench: number;
  /** Cross-check from the audit log: writes by the controller's ServiceAccount. */
  auditController: number;
  /** Audit-log writes by anyone but the bench and the controller (e.g. the apiserver's own leases). */
  auditOthers: Record<string, number>;
  /** Every request (reads too) in the window per `VERB group/resource`, with the apiserver's mean time for it. */
  byResource: Record<string, { n: number; meanMs: number }>;
}

function writesBetween(a: WriteSnapshot, b: WriteSnapshot, benchUser: string): WriteFigures {
  const bench = b.bench - a.bench;
  const auditOthers: Record<string, number> = {};
  for (const [user, n] of b.audit) {
    const d = n - (a.audit.get(user) ?? 0);
    if (d > 0 && user !== CONTROLLER_USER && user !== benchUser) auditOthers[user] = d;
  }
  const byResource: Record<string, { n: number; meanMs: number }> = {};
  for (const [k, e] of b.byResource) {
    const n = e.n - (a.byResource.get(k)?.n ?? 0);
    if (n > 0) byResource[k] = { n, meanMs: (1000 * (e.seconds - (a.byResource.get(k)?.seconds ?? 0))) / n };
  }
  const others = Object.values(auditOthers).reduce((x, y) => x + y, 0);
  return {
    controller: b.apiserver - a.apiserver - bench - others,
    apiserverTotal: b.apiserver - a.apiserver,
    bench,
    auditController: (b.audit.get(CONTROLLER_USER) ?? 0) - (a.audit.get(CONTROLLER_USER) ?? 0),
    auditOthers,
    byResource,
  };
}

interface ObjectWriteSpan {
  firstMs: number;
  lastMs: number;
  /** The controller's other writes (statuses, events, NodeUnits) received before the last object create completed. */
  otherWritesMeanwhile: number;
}

/**
 * When the controller's object creates reached the apiserver, from its audit log: the first one
 * received and the last one completed, in ms after `sinceWallMs` (a Date.now() of the bench, the
 * same clock). Splits a reaction into the controller noticing and the writes themselves.
 */
function objectWriteSpan(after: WriteSnapshot, sinceWallMs: number): ObjectWriteSpan | undefined {
  const mine = after.requests.filter((w) => w.user === CONTROLLER_USER && w.receivedAt >= sinceWallMs);
  const creates = mine.filter((w) => w.verb === 'create' && (w.resource === 'deployments' || w.resource === 'services'));
  if (!creates.length) return undefined;
  const first = Math.min(...creates.map((w) => w.receivedAt));
  const last = Math.max(...creates.map((w) => w.completedAt));
  return {
    firstMs: first - sinceWallMs,
    lastMs: last - sinceWallMs,
    otherWritesMeanwhile: mine.filter((w) => !creates.includes(w) && w.receivedAt < last).length,
  };
}

/**
 * Waits until the apiserver's write count has not moved for `quietMs` (the controller is done
 * writing). A program that never stops writing is a result, not an error: false after the timeout.
 */
async function writesQuiet(cluster: Cluster, quietMs = 1500, timeoutMs = 60_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let last = await cluster.writeRequestCount();
  let since = Date.now();
  while (Date.now() - since < quietMs) {
    if (Date.now() > deadline) {
      console.error(`[bench] writes did not stop for ${quietMs} ms within ${timeoutMs / 1000} s; carrying on`);
      return false;
    }
    await sleep(250);
    const now = await cluster.writeRequestCount();
    if (now !== last) {
      last = now;
      since = Date.now();
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Objects.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const createNode = (name: string, labels: Record<string, string>) =>
  write('POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name, labels } }).then(() => {});

const createNamespace = (name: string) =>
  write('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } }).then(() => {});

/**
 * Watches Deployments and Services (and, optionally, grids) of a namespace from now on, and
 * resolves `until(pred)` the moment the set of names seen satisfies it, with that moment. Watches
 * the apiserver ends are re-opened (see ResumableWatch), so a long run does not stall on one.
 */
class Seen {
  readonly deployments = new Set<string>();
  readonly services = new Set<string>();
  // biome-ignore lint/suspicious/noExplicitAny: raw API objects
  readonly grids = new Map<string, any>();
  private readonly streams: ResumableWatch[] = [];
  private waiters: { pred: () => boolean; resolve: (at: number) => void }[] = [];
  constructor(ns: string, labelSelector: string, withGrids: boolean) {
    const params = { labelSelector };
    const names = (set: Set<string>) => {
      const onEvent = (ev: { type: string; object: { metadata: { name: string } }; at: number }) => {
        if (ev.type === 'ADDED' || ev.type === 'MODIFIED') set.add(ev.object.metadata.name);
        else if (ev.type === 'DELETED') set.delete(ev.object.metadata.name);
        this.check(ev.at);
      };
      const onRelist = (items: { metadata: { name: string } }[], at: number) => {
        set.clear();
        for (const o of items) set.add(o.metadata.name);
        this.check(at);
      };
      return [onEvent, onRelist] as const;
    };
    this.streams.push(new ResumableWatch(api, `/apis/apps/v1/namespaces/${ns}/deployments`, params, ...names(this.deployments)));
    this.streams.push(new ResumableWatch(api, `/api/v1/namespaces/${ns}/services`, params, ...names(this.services)));
    if (withGrids) {
      for (const plural of ['deploymentgrids', 'servicegrids']) {
        const key = (o: { metadata: { name: string } }) => `${plural}/${o.metadata.name}`;
        this.streams.push(
          new ResumableWatch(
            api,
            `${GRIDS_API}/namespaces/${ns}/${plural}`,
            {},
            (ev) => {
              if (ev.type === 'DELETED') this.grids.delete(key(ev.object));
              else this.grids.set(key(ev.object), ev.object);
              this.check(ev.at);
            },
            (items, at) => {
              for (const k of [...this.grids.keys()]) if (k.startsWith(`${plural}/`)) this.grids.delete(k);
              for (const o of items) this.grids.set(key(o), o);
              this.check(at);
            },
          ),
        );
      }
    }
  }
  /** How many times the apiserver ended one of these watches (each was re-opened). */
  get reopened(): number {
    return this.streams.reduce((n, s) => n + s.reopened, 0);
  }
  opened(): Promise<unknown> {
    return Promise.all(this.streams.map((s) => s.opened));
  }
  private check(at: number) {
    this.waiters = this.waiters.filter((w) => {
      if (!w.pred()) return true;
      w.resolve(at);
      return false;
    });
  }
  /** performance.now() of the event that made `pred` true (now, if it already is). */
  until(what: string, pred: () => boolean, timeoutMs = N.waitMs): Promise<number> {
    if (pred()) return Promise.resolve(performance.now());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
      this.waiters.push({
        pred,
        resolve: (at) => {
          clearTimeout(timer);
          resolve(at);
        },
      });
    });
  }
  close() {
    for (const s of this.streams) s.close();
    watchesReopened += this.reopened;
  }
}

/** Watches the apiserver ended during the run, each re-opened (reported with the results). */
let watchesReopened = 0;

// biome-ignore lint/suspicious/noExplicitAny: raw API objects
function statusSettled(g: any, units: number): boolean {
  return (
    g?.status?.totalUnits === units && g.status.observedGeneration === g.metadata.generation && (g.status.units?.length ?? 0) === units
  );
}

// ---------------------------------------------------------------------------------------------
// The controller process.

/** The image, assembled once per run when --as-image is given. */
let image: AssembledImage | undefined;
let imageStarts = 0;
/** The argv the image's controller was last started with (reported with the results). */
let imageArgv: string | undefined;

/**
 * The controller as its Deployment starts the image (examples/install/controller.yaml: command,
 * args, env values, readiness probe) on the assembled image's plain JavaScript, with two args
 * changed for the benchmark: --leader-elect=false (Lease renewals would count as steady-state
 * writes) and --resync-period from --resync. Ready when the manifest's readiness probe answers.
 */
async function startAsImage(cluster: Cluster, built: AssembledImage, kubeconfig: string, resyncSeconds: number): Promise<ProgramUnderTest> {
  const container = await manifestContainer('controller.yaml');
  const overrides: Record<string, string> = { '--leader-elect': 'false', '--resync-period': goDuration(resyncSeconds) };
  const args = (container.args ?? []).map((a) => {
    const flag = a.split('=')[0]!;
    return flag in overrides ? `${flag}=${overrides[flag]}` : a;
  });
  const started = await startContainer(
    cluster,
    built,
    `controller-image-${++imageStarts}`,
    { ...container, args },
    { KUBECONFIG: kubeconfig },
  );
  const c = started.component;
  const metricsPort = started.ports.get(container.ports?.find((p) => p.name === 'metrics')?.containerPort ?? -1);
  imageArgv = started.argv.join(' ');
  console.error(`[bench] controller started as the image starts it: ${imageArgv}`);
  return {
    url: new URL(started.readyUrl).origin,
    pid: c.child.pid,
    metricsUrl: metricsPort ? `http://127.0.0.1:${metricsPort}/metrics` : undefined,
    tail: () => c.tail(),
    isRunning: () => c.isRunning(),
  };
}

/** Node.js heap figures from the controller's own metrics (prom-client's runtime metrics), in MiB. */
async function heapFigures(c: ProgramUnderTest): Promise<Record<string, number> | undefined> {
  if (!c.metricsUrl) return undefined;
  const r = await request({ url: c.metricsUrl }, 'GET', '').catch(() => undefined);
  if (r?.status !== 200) return undefined;
  const out: Record<string, number> = {};
  for (const line of r.body.split('\n')) {
    const m =
      /^(nodejs_heap_size_used_bytes|nodejs_heap_size_total_bytes|nodejs_external_memory_bytes|nodejs_heap_space_size_used_bytes\{space="(\w+)"\}) (\S+)/.exec(
        line,
      );
    if (m) out[m[2] ? `heap space ${m[2]}` : m[1]!.replace(/^nodejs_|_bytes$/g, '')] = Number(m[3]) / 2 ** 20;
  }
  return Object.keys(out).length ? out : undefined;
}

const WARMUP_NS = 'warmup';
const WARMUP_KEY = 'bench-warmup';
let warmups = 0;

/**
 * Starts the controller and waits until it works: /readyz answers 200, or (--no-readyz) a grid
 * created now, keyed on a label only one node carries, has its Deployment. The warm-up grid and
 * its Deployment are removed again before anything is measured.
 */
async function startController(cluster: Cluster, kubeconfig: string, resyncSeconds: number): Promise<ProgramUnderTest> {
  const c = image
    ? await startAsImage(cluster, image, kubeconfig, resyncSeconds)
    : await startControllerUnderTest(cluster, { cmd: values['controller-cmd'], kubeconfig, resyncSeconds });
  if (!values['no-readyz']) {
    const deadline = Date.now() + N.waitMs;
    while (Date.now() < deadline && c.isRunning?.() !== false) {
      const r = await request({ url: c.url }, 'GET', '/readyz').catch(() => undefined);
      if (r?.status === 200) return c;
      await sleep(100);
    }
    throw new Error(
      `the controller ${c.isRunning?.() === false ? 'exited' : 'did not answer /readyz with 200'} within ${N.waitMs / 1000} s (for a program without /readyz: --no-readyz); its log ends:\n${c.tail?.() ?? ''}`,
    );
  }
  const name = `warmup-${++warmups}`;
  const seen = new Seen(WARMUP_NS, `${LABEL_GRID}=${name}`, false);
  await seen.opened();
  const started = performance.now();
  await write('POST', `${GRIDS_API}/namespaces/${WARMUP_NS}/deploymentgrids`, deploymentGrid(WARMUP_NS, name, WARMUP_KEY));
  await seen.until(`the warm-up grid's Deployment (is the controller running?)`, () => seen.deployments.size === 1);
  seen.close();
  console.error(`[bench] controller working: warm-up grid rendered ${(performance.now() - started).toFixed(0)} ms after its create`);
  await write('DELETE', `${GRIDS_API}/namespaces/${WARMUP_NS}/deploymentgrids/${name}`);
  await write('DELETE', `/apis/apps/v1/namespaces/${WARMUP_NS}/deployments?labelSelector=${encodeURIComponent(`${LABEL_GRID}=${name}`)}`);
  return c;
}

async function stopController(c: ProgramUnderTest): Promise<void> {
  if (!c.pid) return;
  process.kill(c.pid, 'SIGTERM');
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      process.kill(c.pid, 0);
    } catch {
      return;
    }
    if (Date.now() > deadline) {
      process.kill(c.pid, 'SIGKILL');
      return;
    }
    await sleep(50);
  }
}

/** Reconciles the controller reports in its own metrics (when it exports controller_runtime_reconcile_total). */
async function reconcileCount(c: ProgramUnderTest): Promise<number | undefined> {
  if (!c.metricsUrl) return undefined;
  const r = await request({ url: c.metricsUrl }, 'GET', '').catch(() => undefined);
  if (r?.status !== 200) return undefined;
  let total: number | undefined;
  for (const line of r.body.split('\n')) {
    if (line.startsWith('controller_runtime_reconcile_total{')) total = (total ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// 4. Convergence.

interface ConvergenceRound {
  round: number;
  /** Create responses → all objects seen on the watches. */
  objectsMs: number;
  /** Create responses → both grids' status written for every unit (unless --no-status). */
  statusMs?: number;
  /** Writes from before the creates until the controller stopped writing. */
  writes: WriteFigures;
  controllerCpuSeconds?: number;
  /** The controller's first object create received and last completed by the apiserver, after the first create response. */
  objectWrites?: ObjectWriteSpan;
}

async function convergenceRound(
  cluster: Cluster,
  controller: ProgramUnderTest,
  round: number,
  benchUser: string,
): Promise<ConvergenceRound> {
  const ns = `converge-${round}`;
  await createNamespace(ns);
  const seen = new Seen(ns, LABEL_GRID, true);
  await seen.opened();
  const name = 'web';
  const unitServiceNames = Array.from({ length: N.units }, (_, i) => `${name}-svc-z${i}`);
  const objectsPresent = () =>
    seen.deployments.size >= N.units && seen.services.has(`${name}-svc`) && unitServiceNames.every((s) => seen.services.has(s));
  const statusWritten = () =>
    statusSettled(seen.grids.get(`deploymentgrids/${name}`), N.units) && statusSettled(seen.grids.get(`servicegrids/${name}`), N.units);

  await writesQuiet(cluster, 1000);
  const before = await snapshot(cluster);
  const cpuBefore = controller.pid ? procStats(controller.pid).cpuSeconds : undefined;
  let firstResponse = Number.POSITIVE_INFINITY;
  let firstResponseWall = Number.POSITIVE_INFINITY;
  await Promise.all(
    [
      write('POST', `${GRIDS_API}/namespaces/${ns}/deploymentgrids`, deploymentGrid(ns, name, 'zone')),
      write('POST', `${GRIDS_API}/namespaces/${ns}/servicegrids`, serviceGrid(ns, name, 'zone', name)),
    ].map((p) =>
      p.then(() => {
        firstResponse = Math.min(firstResponse, performance.now());
        firstResponseWall = Math.min(firstResponseWall, Date.now());
      }),
    ),
  );
  const objectsAt = await seen.until(`convergence round ${round}: all objects`, objectsPresent);
  const statusAt = withStatus ? await seen.until(`convergence round ${round}: status`, statusWritten) : undefined;
  await writesQuiet(cluster);
  const after = await snapshot(cluster);
  const cpuAfter = controller.pid ? procStats(controller.pid).cpuSeconds : undefined;
  const objectWrites = objectWriteSpan(after, firstResponseWall);
  seen.close();
  const deployments = seen.deployments.size;
  if (deployments !== N.units) throw new Error(`round ${round}: ${deployments} Deployments, expected ${N.units}`);

  // No garbage collector without kube-controller-manager: remove the grids, then what they rendered.
  await write('DELETE', `${GRIDS_API}/namespaces/${ns}/deploymentgrids/${name}`);
  await write('DELETE', `${GRIDS_API}/namespaces/${ns}/servicegrids/${name}`);
  const sel = `labelSelector=${encodeURIComponent(LABEL_GRID)}`;
  await write('DELETE', `/apis/apps/v1/namespaces/${ns}/deployments?${sel}`);
  // Services have no deletecollection: one by one.
  const svcs = await requestOk<{ items: { metadata: { name: string } }[] }>(api, 'GET', `/api/v1/namespaces/${ns}/services?${sel}`);
  await inParallel(svcs.items.length, 16, (i) =>
    write('DELETE', `/api/v1/namespaces/${ns}/services/${svcs.items[i]!.metadata.name}`).then(() => {}),
  );

  return {
    round,
    objectsMs: objectsAt - firstResponse,
    statusMs: statusAt === undefined ? undefined : statusAt - firstResponse,
    writes: writesBetween(before, after, benchUser),
    controllerCpuSeconds: cpuBefore !== undefined && cpuAfter !== undefined ? cpuAfter - cpuBefore : undefined,
    objectWrites,
  };
}

// ---------------------------------------------------------------------------------------------
// 5 and 6. Steady state and reaction.

const steadyDG = (i: number) => `dg-${i}`;
const steadySG = (i: number) => `sg-${i}`;

async function main() {
  const loadBefore = loadavg()[0]!;
  const cluster = await startCluster();
  try {
    api = apiserverEndpoint(cluster);
    const version = await requestOk<{ gitVersion: string }>(api, 'GET', '/version');
    await installCrds(cluster);
    const kubeconfig = await installRbac(cluster);
    if (values['as-image']) {
      const t0 = performance.now();
      image = await assembleImage({
        dockerfile: join(root, 'Dockerfile'),
        context: root,
        dir: await mkdtemp(join(cluster.dir, 'image-')),
        toolsPath: dirname(process.execPath),
      });
      console.error(`[bench] image assembled in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    }
    // Who the bench is in the audit log: the user of a write it makes now.
    await createNamespace(STEADY_NS);
    const benchUser = (await cluster.writeRequests()).find((e) => e.resource === 'namespaces' && e.name === STEADY_NS)?.user ?? '';

    let t = performance.now();
    await inParallel(N.units, 32, (i) => createNode(`zone-node-${i}`, { zone: `z${i}` }));
    await inParallel(N.steadyUnits, 16, (i) => createNode(`site-node-${i}`, { site: `s${i}` }));
    if (values['no-readyz']) {
      await createNode('warmup-node', { [WARMUP_KEY]: 'w' });
      await createNamespace(WARMUP_NS);
    }
    console.error(`[bench] ${N.units} + ${N.steadyUnits} nodes created in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    // 4. Convergence, with a controller of its own (default resync, so none falls in a round).
    let controller = await startController(cluster, kubeconfig, 600);
    const rounds: ConvergenceRound[] = [];
    for (let r = 1; r <= N.rounds; r++) {
      const res = await convergenceRound(cluster, controller, r, benchUser);
      rounds.push(res);
      console.error(
        `[bench] convergence round ${r}: objects ${res.objectsMs.toFixed(0)} ms, status ${res.statusMs?.toFixed(0) ?? 'n/a'} ms, controller writes ${res.writes.controller} (audit ${res.writes.auditController})${res.objectWrites ? `; object creates reached the apiserver from ${res.objectWrites.firstMs.toFixed(0)} ms, the last completed at ${res.objectWrites.lastMs.toFixed(0)} ms, ${res.objectWrites.otherWritesMeanwhile} other writes meanwhile` : ''}`,
      );
    }
    await stopController(controller);

    // 5. Steady state: a fresh controller with the forced-resync period.
    controller = await startController(cluster, kubeconfig, N.resyncSeconds);
    const half = N.grids / 2;
    const seen = new Seen(STEADY_NS, LABEL_GRID, true);
    await seen.opened();
    t = performance.now();
    await inParallel(N.grids, 16, (i) =>
      (i < half
        ? write('POST', `${GRIDS_API}/namespaces/${STEADY_NS}/deploymentgrids`, deploymentGrid(STEADY_NS, steadyDG(i), 'site'))
        : write(
            'POST',
            `${GRIDS_API}/namespaces/${STEADY_NS}/servicegrids`,
            serviceGrid(STEADY_NS, steadySG(i - half), 'site', steadyDG(i - half)),
          )
      ).then(() => {}),
    );
    const gridsSettled = (units: number) => {
      if (seen.grids.size !== N.grids) return false;
      if (withStatus) for (const g of seen.grids.values()) if (!statusSettled(g, units)) return false;
      return true;
    };
    await seen.until(
      'steady grids settled',
      () =>
        seen.deployments.size === half * N.steadyUnits && seen.services.size === half * (N.steadyUnits + 1) && gridsSettled(N.steadyUnits),
    );
    const settleMs = performance.now() - t;
    const quietBeforeWindow = await writesQuiet(cluster, 3000);
    console.error(
      `[bench] ${N.grids} grids × ${N.steadyUnits} units settled in ${(settleMs / 1000).toFixed(1)} s; steady window of ${N.steadySeconds} s`,
    );

    const before = await snapshot(cluster);
    const reconcilesBefore = await reconcileCount(controller);
    const pid = controller.pid;
    const cpuA = pid ? procStats(pid).cpuSeconds : 0;
    const rss: number[] = [];
    const windowStart = performance.now();
    while (performance.now() - windowStart < N.steadySeconds * 1000) {
      if (pid) rss.push(procStats(pid).rssMiB);
      await sleep(Math.max(0, Math.min(1000, N.steadySeconds * 1000 - (performance.now() - windowStart))));
    }
    const windowSeconds = (performance.now() - windowStart) / 1000;
    const steadyCpu = pid ? (procStats(pid).cpuSeconds - cpuA) / windowSeconds : undefined;
    const after = await snapshot(cluster);
    const reconcilesAfter = await reconcileCount(controller);
    const heapMiB = await heapFigures(controller);
    const residentMiB = pid ? residentParts(pid) : undefined;
    const steadyWrites = writesBetween(before, after, benchUser);
    const steady = {
      settleMs,
      quietBeforeWindow,
      windowSeconds,
      writes: steadyWrites,
      cpu: steadyCpu,
      rssMiB: pid ? rss[rss.length - 1] : undefined,
      rssMaxMiB: pid ? Math.max(...rss) : undefined,
      rssMedianMiB: pid ? median(rss) : undefined,
      heapMiB,
      residentMiB,
      reconcilesInWindow: reconcilesBefore !== undefined && reconcilesAfter !== undefined ? reconcilesAfter - reconcilesBefore : undefined,
    };
    seen.close();

    // 6. Reaction: new site values, one at a time.
    const reactions: {
      unit: string;
      ms: number;
      statusMs?: number;
      writes: WriteFigures;
      objectWrites?: ObjectWriteSpan;
    }[] = [];
    for (let r = 0; r < N.reactions; r++) {
      const unit = `s${N.steadyUnits + r}`;
      const watch = new Seen(STEADY_NS, `${LABEL_UNIT}=${unit}`, true);
      await watch.opened();
      const b = await snapshot(cluster);
      const started = performance.now();
      await createNode(`site-node-${N.steadyUnits + r}`, { site: unit });
      const respondedAt = performance.now();
      const respondedWall = Date.now();
      const at = await watch.until(`reaction to ${unit}`, () => watch.deployments.size === half && watch.services.size === half);
      // Grids are watched from now on, so each one's first event is its status update.
      const statusAt = withStatus
        ? await watch.until(
            `status for ${unit}`,
            () => watch.grids.size === N.grids && [...watch.grids.values()].every((g) => statusSettled(g, N.steadyUnits + r + 1)),
          )
        : undefined;
      await writesQuiet(cluster);
      const a = await snapshot(cluster);
      watch.close();
      const objectWrites = objectWriteSpan(a, respondedWall);
      reactions.push({
        unit,
        ms: at - respondedAt,
        statusMs: statusAt === undefined ? undefined : statusAt - respondedAt,
        writes: writesBetween(b, a, benchUser),
        objectWrites,
      });
      const span = objectWrites
        ? `; the controller's first object create reached the apiserver after ${objectWrites.firstMs.toFixed(0)} ms, the last completed after ${objectWrites.lastMs.toFixed(0)} ms, ${objectWrites.otherWritesMeanwhile} other writes meanwhile`
        : '';
      console.error(
        `[bench] reaction to ${unit}: ${(at - respondedAt).toFixed(0)} ms (create took ${(respondedAt - started).toFixed(0)} ms${span})`,
      );
    }
    if (pid) Object.assign(steady, { rssAfterReactionsMiB: procStats(pid).rssMiB });
    await stopController(controller);

    // -------------------------------------------------------------------------------------------
    const med = (xs: (number | undefined)[]) => median(xs.filter((x): x is number => typeof x === 'number'));
    const f = (x: number | undefined, unit: string, digits = 0) =>
      typeof x === 'number' && !Number.isNaN(x) ? `${x.toFixed(digits)} ${unit}` : 'n/a';
    const all = (xs: number[], digits = 0) => xs.map((x) => x.toFixed(digits)).join(', ');
    const conv = {
      objectsMs: med(rounds.map((r) => r.objectsMs)),
      statusMs: med(rounds.map((r) => r.statusMs)),
      writes: med(rounds.map((r) => r.writes.controller)),
      auditWrites: med(rounds.map((r) => r.writes.auditController)),
      cpuSeconds: med(rounds.map((r) => r.controllerCpuSeconds)),
    };
    const others = (w: WriteFigures) => Object.values(w.auditOthers).reduce((a, b) => a + b, 0);
    const react = {
      ms: med(reactions.map((r) => r.ms)),
      statusMs: med(reactions.map((r) => r.statusMs)),
      writes: med(reactions.map((r) => r.writes.controller)),
    };
    const cmd = values['controller-cmd'] ?? imageArgv ?? DEFAULT_CONTROLLER_CMD;
    const ours = !values['controller-cmd'];
    let commit = 'unknown';
    try {
      commit = execFileSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    } catch {}
    console.log(`\nmachine load (1-min average, all users): ${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after`);
    printTable(
      `controllers: ${ours ? `servicegroup-controller @ ${commit}` : cmd}; kube-apiserver ${version.gitVersion}; ${machine()}; ${new Date().toISOString().slice(0, 10)}`,
      ['what', 'value', 'target'],
      [
        [
          `4. convergence, ${N.units} units: create → all objects (median of ${rounds.length}: ${all(rounds.map((r) => r.objectsMs))} ms)`,
          f(conv.objectsMs, 'ms'),
          '≤ 700 ms',
        ],
        ['   create → status of both grids written for every unit', f(conv.statusMs, 'ms'), ''],
        [
          `   controller write requests until quiet (apiserver metrics; audit: ${f(conv.auditWrites, 'by its SA')})`,
          f(conv.writes, ''),
          `≥ ${2 * N.units + 1} objects`,
        ],
        ['   controller CPU during a round', f(conv.cpuSeconds, 'CPU s', 2), ''],
        [`5. steady: ${N.grids} grids × ${N.steadyUnits} units settle after create`, f(settleMs, 'ms'), ''],
        [
          `   write requests in ${windowSeconds.toFixed(0)} s, resync ${goDuration(N.resyncSeconds)}${steady.reconcilesInWindow !== undefined ? ` (${steady.reconcilesInWindow} reconciles ran)` : ''}`,
          `${steadyWrites.controller}${others(steadyWrites) ? ` (+${others(steadyWrites)} not the controller's)` : ''}`,
          '0',
        ],
        ['   controller CPU over the window', f(steady.cpu === undefined ? undefined : steady.cpu * 100, '% of a core', 2), ''],
        [
          `   controller RSS over the window (median / max / end)${image ? ', started as the image starts it' : ''}`,
          `${f(steady.rssMedianMiB, 'MiB', 1)} / ${f(steady.rssMaxMiB, 'MiB', 1)} / ${f(steady.rssMiB, 'MiB', 1)}`,
          image ? '≤ 80 MiB' : '',
        ],
        [
          '   of the RSS at the end: anonymous (heaps, stacks) / file-backed (node binary, libraries)',
          `${f(steady.residentMiB?.anonymousMiB, 'MiB', 1)} / ${f(steady.residentMiB?.fileMiB, 'MiB', 1)}`,
          '',
        ],
        [
          '   controller V8 heap used / total at the end of the window',
          `${f(heapMiB?.heap_size_used, 'MiB', 1)} / ${f(heapMiB?.heap_size_total, 'MiB', 1)}`,
          '',
        ],
        [
          `6. reaction: new unit → ${half} Deployments + ${half} Services (median of ${reactions.length}: ${all(reactions.map((r) => r.ms))} ms)`,
          f(react.ms, 'ms'),
          '≤ 300 ms',
        ],
        ["   new unit → all grids' status updated", f(react.statusMs, 'ms'), ''],
        ['   controller write requests per new unit', f(react.writes, ''), ''],
        [
          'watches the apiserver ended (each re-opened, none missed)',
          String(watchesReopened),
          `${values['no-readyz'] ? 'started: warm-up grid' : 'started: /readyz'}${withStatus ? '' : '; status not measured'}`,
        ],
      ],
    );
    const otherInRounds = rounds.map((r) => others(r.writes)).reduce((a, b) => a + b, 0);
    if (otherInRounds + others(steadyWrites) > 0)
      console.log(
        `\nThe apiserver counts its own writes too (audit log: ${otherInRounds} during convergence rounds, ${others(steadyWrites)} during the steady window, by ${[
          ...new Set([...rounds.flatMap((r) => Object.keys(r.writes.auditOthers)), ...Object.keys(steadyWrites.auditOthers)]),
        ].join(', ')}); they are not counted as the controller's.`,
      );
    const last = rounds[rounds.length - 1];
    if (last) {
      const top = Object.entries(last.writes.byResource)
        .sort((x, y) => y[1].n - x[1].n)
        .slice(0, 6)
        .map(([k, e]) => `${k} ×${e.n} (${e.meanMs.toFixed(1)} ms)`);
      console.log(`\nRequests in convergence round ${last.round}, with the apiserver's mean time each: ${top.join(', ')}`);
    }
    writeJson(values.out, {
      benchmark: 'controllers',
      machine: machine(),
      date: new Date().toISOString(),
      versions: { node: process.versions.node, kubeApiserver: version.gitVersion, commit, controllerCmd: cmd },
      params: N,
      convergence: { median: conv, rounds },
      steady,
      reaction: { median: react, reactions },
      watchesReopened,
      options: { readyz: !values['no-readyz'], status: withStatus, asImage: !!image },
      loadAverage1m: { before: loadBefore, after: loadavg()[0] },
    });
  } finally {
    await cluster.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
