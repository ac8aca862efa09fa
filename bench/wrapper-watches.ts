// Wrapper benchmark: a burst of watch connections. Opens --watches kube-proxy style watches
// (EndpointSlices from a list's resourceVersion, bookmarks on) as fast as --concurrency allows,
// twice: once against the wrapper's watch limit (--max-watches; the rest must get 429), once with
// the limit raised to --watches (every watch admitted, to measure what one watch costs). Meanwhile
// /healthz is probed every 50 ms on the probe port. Prints RSS and heap before, with the watches
// open and after they are closed (and the heap still alive after a full collection), the 429
// count and the /healthz latency during the burst.
//   --watches 10000 --max-watches 1000 --concurrency 256 --services 50
//   --wrapper-cmd '... --max-watches={maxWatches}' | --wrapper-url URL   --out f.json
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { type Cluster, startCluster } from '../test/cluster/cluster.ts';
import { installWrapperRbac } from '../test/wrapper-harness.ts';
import {
  apiserverEndpoint,
  DEFAULT_WRAPPER_CMD,
  type Endpoint,
  inParallel,
  KUBE_PROXY_SELECTOR,
  machine,
  type ProgramUnderTest,
  procStats,
  request,
  requestOk,
  startWrapperUnderTest,
  TOPOLOGY_ANNOTATIONS,
  withQuery,
  writeJson,
} from './lib.ts';
import { percentile, printTable } from './table.ts';

const { values } = parseArgs({
  options: {
    watches: { type: 'string', default: '10000' },
    'max-watches': { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '256' },
    services: { type: 'string', default: '50' },
    'wrapper-cmd': { type: 'string' },
    'wrapper-url': { type: 'string' },
    out: { type: 'string' },
  },
});
const positive = (name: string, v: string | undefined) => {
  const n = Number(v);
  if (!/^\d+$/.test(v ?? '') || n < 1) throw new Error(`--${name} must be a whole number of at least 1, not ${JSON.stringify(v)}`);
  return n;
};
const N = {
  watches: positive('watches', values.watches),
  maxWatches: positive('max-watches', values['max-watches']),
  concurrency: positive('concurrency', values.concurrency),
  services: positive('services', values.services),
};
const NS = 'watches';
const SLICES = '/apis/discovery.k8s.io/v1/endpointslices';
// Our wrapper also writes a heap snapshot on SIGUSR2: taking one runs a full garbage collection,
// so the heap measured after it is what is still alive, not garbage an idle process never collects.
const WRAPPER_CMD =
  values['wrapper-cmd'] ??
  `${DEFAULT_WRAPPER_CMD.replace(`${process.execPath} `, `${process.execPath} --heapsnapshot-signal=SIGUSR2 --diagnostic-dir={diag} `)} --max-watches={maxWatches}`;
const SNAPSHOTS = !values['wrapper-cmd'] && !values['wrapper-url'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = 1024 * 1024;

/** One watch held open: its status code, or the error that ended it before a response. */
interface HeldWatch {
  status: number;
  close(): void;
}

/** Opens a watch on its own connection (as every kube-proxy has its own) and keeps it open. */
function openWatch(url: string): Promise<HeldWatch> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { agent: false, headers: { accept: 'application/json' } }, (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, close: () => res.destroy() });
    });
    req.on('error', () => resolve({ status: -1, close: () => req.destroy() }));
    req.end();
  });
}

/** Probes /healthz every 50 ms on a new connection (as the kubelet does) until stopped. */
function probeHealth(url: string) {
  const latencies: number[] = [];
  let failures = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      const ok = await new Promise<boolean>((resolve) => {
        const req = httpRequest(`${url}/healthz`, { agent: false, timeout: 5000 }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode === 200));
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', () => resolve(false));
        req.end();
      });
      if (ok) latencies.push(performance.now() - started);
      else failures++;
      await sleep(50);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { latencies, failures };
    },
  };
}

/** Stops a wrapper this benchmark started, so the next round starts fresh. */
async function stopProcess(pid: number) {
  const alive = () => {
    try {
      return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
    } catch {
      return false;
    }
  };
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (alive()) {
    if (Date.now() > deadline) throw new Error(`wrapper ${pid} did not stop within 10 s of SIGTERM`);
    await sleep(100);
  }
}

interface Memory {
  rssMiB: number;
  heapUsedMiB: number;
  watches: number;
}

async function memory(w: ProgramUnderTest): Promise<Memory> {
  const body = (await request({ url: w.metricsUrl ?? `${w.url}/metrics` }, 'GET', '')).body;
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(body)?.[1] ?? Number.NaN);
  const watches = [...body.matchAll(/^servicegroup_wrapper_watchers\{[^}]*\} (\S+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
  const rss = w.pid ? procStats(w.pid).rssMiB : value('process_resident_memory_bytes') / MiB;
  return { rssMiB: rss, heapUsedMiB: value('nodejs_heap_size_used_bytes') / MiB, watches };
}

interface Round {
  name: string;
  maxWatches: number;
  before: Memory;
  open: Memory;
  /** Just after every watch is closed and the watch count is back to its baseline. */
  closed: Memory;
  /** 30 s later. */
  settled: Memory;
  /** Then after a full garbage collection (our wrapper only): what the closed watches left alive. */
  liveHeapMiB: number | undefined;
  admitted: number;
  refused429: number;
  failed: number;
  burstSeconds: number;
  healthz: { count: number; failures: number; p50Ms: number; p99Ms: number; maxMs: number };
}

async function round(cluster: Cluster, kubeconfig: string, name: string, maxWatches: number): Promise<Round> {
  const wrapper = await startWrapperUnderTest(cluster, {
    cmd: WRAPPER_CMD,
    url: values['wrapper-url'],
    nodeName: 'node-0',
    kubeconfig,
    name: `wrapper-${name}`,
    vars: { maxWatches: String(maxWatches), diag: cluster.dir },
  });
  const ep: Endpoint = { url: wrapper.url };
  const list = await requestOk<{ metadata: { resourceVersion?: string } }>(
    ep,
    'GET',
    withQuery(SLICES, { labelSelector: KUBE_PROXY_SELECTOR }),
  );
  const watchUrl = `${wrapper.url}${withQuery(SLICES, {
    watch: 1,
    allowWatchBookmarks: true,
    timeoutSeconds: 3600,
    labelSelector: KUBE_PROXY_SELECTOR,
    resourceVersion: list.metadata.resourceVersion,
  })}`;
  await sleep(3000);
  const before = await memory(wrapper);

  const probe = probeHealth(wrapper.metricsUrl ? wrapper.metricsUrl.replace(/\/metrics$/, '') : wrapper.url);
  const held: HeldWatch[] = [];
  const started = performance.now();
  await inParallel(N.watches, N.concurrency, async () => {
    held.push(await openWatch(watchUrl));
  });
  const burstSeconds = (performance.now() - started) / 1000;
  const health = await probe.stop();
  const admitted = held.filter((h) => h.status === 200).length;
  const refused429 = held.filter((h) => h.status === 429).length;
  // Refused watches are answered and their connections closed by the client now, so what stays
  // open is what was admitted.
  for (const h of held) if (h.status !== 200) h.close();
  await sleep(3000);
  const open = await memory(wrapper);

  for (const h of held) h.close();
  const deadline = Date.now() + 60_000;
  let closed = await memory(wrapper);
  while (closed.watches > before.watches) {
    if (Date.now() > deadline) throw new Error(`${name}: ${closed.watches} watches still counted 60 s after every client closed`);
    await sleep(200);
    closed = await memory(wrapper);
  }
  await sleep(30_000);
  const settled = await memory(wrapper);
  let liveHeapMiB: number | undefined;
  if (SNAPSHOTS && wrapper.pid) {
    // The snapshot is written on the wrapper's main thread: the next /metrics answer comes after it.
    process.kill(wrapper.pid, 'SIGUSR2');
    await sleep(100);
    liveHeapMiB = (await memory(wrapper)).heapUsedMiB;
  }
  if (wrapper.pid) await stopProcess(wrapper.pid);
  const p = (q: number) => percentile(health.latencies, q);
  return {
    name,
    maxWatches,
    before,
    open,
    closed,
    settled,
    liveHeapMiB,
    admitted,
    refused429,
    failed: held.length - admitted - refused429,
    burstSeconds,
    healthz: {
      count: health.latencies.length,
      failures: health.failures,
      p50Ms: p(50),
      p99Ms: p(99),
      maxMs: Math.max(0, ...health.latencies),
    },
  };
}

async function main() {
  const cluster = await startCluster();
  try {
    const api = apiserverEndpoint(cluster);
    await cluster.apply([
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } },
      { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-0', labels: { zone: 'a' } } },
    ]);
    await inParallel(N.services, 16, async (s) => {
      await requestOk(api, 'POST', `/api/v1/namespaces/${NS}/services`, {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: `svc-${s}`, annotations: TOPOLOGY_ANNOTATIONS },
        spec: { ports: [{ port: 80 }] },
      });
      await requestOk(api, 'POST', `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`, {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: `svc-${s}-1`, labels: { 'kubernetes.io/service-name': `svc-${s}` } },
        addressType: 'IPv4',
        ports: [{ port: 80, protocol: 'TCP' }],
        endpoints: [{ addresses: [`10.0.${s >> 8}.${s & 255}`], nodeName: 'node-0', conditions: { ready: true } }],
      });
    });
    const kubeconfig = await installWrapperRbac(cluster);

    const rounds: Round[] = [];
    // A peer implementation without the limit, or one already running, gets one round.
    const limited = !values['wrapper-url'] && WRAPPER_CMD.includes('{maxWatches}');
    rounds.push(await round(cluster, kubeconfig, 'limited', limited ? N.maxWatches : N.watches));
    if (limited && N.maxWatches < N.watches) rounds.push(await round(cluster, kubeconfig, 'all-admitted', N.watches));

    const mib = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
    const load = loadavg();
    printTable(
      `wrapper under a burst of ${N.watches} watches, ${N.concurrency} opening at once (${machine()}; load ${load.map((l) => l.toFixed(1)).join(' ')})`,
      [
        'round',
        'limit',
        'admitted',
        '429',
        'failed',
        'burst s',
        'RSS before',
        'RSS open',
        'RSS KiB per admitted watch',
        'RSS closed',
        'RSS +30 s',
        'heap before',
        'heap open',
        'heap +30 s',
        'live heap',
        'healthz p50/p99/max ms',
        'healthz failed',
      ],
      rounds.map((r) => [
        r.name,
        String(r.maxWatches),
        String(r.admitted),
        String(r.refused429),
        String(r.failed),
        r.burstSeconds.toFixed(1),
        mib(r.before.rssMiB),
        mib(r.open.rssMiB),
        r.admitted ? (((r.open.rssMiB - r.before.rssMiB) * 1024) / r.admitted).toFixed(1) : 'n/a',
        mib(r.closed.rssMiB),
        mib(r.settled.rssMiB),
        mib(r.before.heapUsedMiB),
        mib(r.open.heapUsedMiB),
        mib(r.settled.heapUsedMiB),
        r.liveHeapMiB === undefined ? 'n/a' : mib(r.liveHeapMiB),
        `${r.healthz.p50Ms.toFixed(1)}/${r.healthz.p99Ms.toFixed(1)}/${r.healthz.maxMs.toFixed(1)}`,
        `${r.healthz.failures} of ${r.healthz.count + r.healthz.failures}`,
      ]),
    );
    writeJson(values.out, {
      benchmark: 'wrapper-watches',
      machine: machine(),
      loadavg: load,
      date: new Date().toISOString(),
      params: N,
      rounds,
    });
  } finally {
    await cluster.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
