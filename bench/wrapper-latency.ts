// Wrapper benchmark 1: propagation latency. EndpointSlices of topology-marked Services are updated
// at fixed rates; for each update, the time from the write's response to the event's arrival on
// (a) a watch on the apiserver itself, the floor no proxy can beat, and (b) a watch through the
// wrapper. Both watch what kube-proxy watches: the cluster-wide EndpointSlice collection with its
// label selector, listed then watched from the list's resourceVersion. Prints p50/p99/max of both,
// the added latency and the ratio b/a.
// The run is INVALID (said in the table and the JSON, exit code 1) when a watch ended during it
// (percentiles of the surviving samples would flatter the program) or when the wrapper did not
// filter: every slice has endpoints in both NodeUnits, so an event through the wrapper carrying an
// endpoint of the other NodeUnit means the program forwards rather than filters.
// The writes are made from a worker thread, so that pacing writes and reading their responses
// never delays the reading of the two watches (and vice versa); both watches are read the same way
// on the main thread. Times are performance.timeOrigin + performance.now(), comparable across threads.
// Services carry both topology annotations (this project's and SuperEdge's `topologyKeys`).
//   --rates 100,1000  --seconds 5  --services 50  --out f.json
//   --wrapper-cmd '<cmd with {listen} {port} {node} {kubeconfig} {metrics}>' | --wrapper-url URL
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { type Cluster, startCluster } from '../test/cluster/cluster.ts';
import { installWrapperRbac } from '../test/wrapper-harness.ts';
import {
  apiserverEndpoint,
  type Endpoint,
  KUBE_PROXY_SELECTOR,
  machine,
  requestOk,
  startWrapperUnderTest,
  TOPOLOGY_ANNOTATIONS,
  type WatchEvent,
  WatchStream,
  wholeNumber,
  withQuery,
  writeJson,
} from './lib.ts';
import { percentile, printTable } from './table.ts';

const { values } = parseArgs({
  options: {
    rates: { type: 'string', default: '100,1000' },
    seconds: { type: 'string', default: '5' },
    services: { type: 'string', default: '50' },
    'wrapper-cmd': { type: 'string' },
    'wrapper-url': { type: 'string' },
    out: { type: 'string' },
  },
});

const rates = values.rates.split(',').map((r) => wholeNumber(r, '--rates'));
const seconds = wholeNumber(values.seconds, '--seconds');

const NS = 'bench';
const SEQ = 'bench.servicegroup.io/seq';
const NODES = ['lat-a-1', 'lat-a-2', 'lat-b-1', 'lat-b-2'];
const zoneOf = (node: string) => node.slice(4, 5);
/** The wrapper runs as the first node; endpoints on nodes of another zone must not reach it. */
const WRAPPER_NODE = NODES[0]!;
const SLICES = '/apis/discovery.k8s.io/v1/endpointslices';

export async function setupTopologyServices(cluster: Cluster, api: Endpoint, services: number): Promise<void> {
  await cluster.apply([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } }]);
  for (const n of NODES) {
    await requestOk(api, 'POST', '/api/v1/nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: n, labels: { zone: zoneOf(n) } },
    });
  }
  for (let i = 0; i < services; i++) {
    await requestOk(api, 'POST', `/api/v1/namespaces/${NS}/services`, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: `svc-${i}`, annotations: TOPOLOGY_ANNOTATIONS },
      spec: { ports: [{ port: 80 }] },
    });
    await requestOk(api, 'POST', `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`, sliceOf(i, 0));
  }
}

function sliceOf(i: number, seq: number) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `svc-${i}-1`,
      labels: { 'kubernetes.io/service-name': `svc-${i}`, 'endpointslice.kubernetes.io/managed-by': 'bench' },
      annotations: { [SEQ]: String(seq) },
    },
    addressType: 'IPv4',
    ports: [{ port: 80, protocol: 'TCP' }],
    endpoints: NODES.map((n, k) => ({
      addresses: [`10.${(seq >> 8) & 255}.${seq & 255}.${Math.min(i * 4 + k + 1, 250)}`],
      nodeName: n,
      conditions: { ready: true },
    })),
  };
}

interface Sample {
  response: number;
  direct?: number;
  wrapper?: number;
}

/** Absolute time in ms, comparable between the main thread and the writer thread. */
const now = () => performance.timeOrigin + performance.now();

interface WriterJob {
  api: Endpoint;
  path: string;
  rate: number;
  total: number;
  firstSeq: number;
  services: number;
}

/** The writer thread: paced PUTs; posts each write's response time, then the achieved rate. */
async function writer(job: WriterJob): Promise<void> {
  const started = performance.now();
  const inflight: Promise<void>[] = [];
  for (let k = 0; k < job.total; k++) {
    const due = started + (k * 1000) / job.rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const seq = job.firstSeq + k;
    const i = k % job.services;
    inflight.push(
      requestOk(job.api, 'PUT', `${job.path}/svc-${i}-1`, sliceOf(i, seq)).then(() => {
        parentPort!.postMessage({ seq, response: now() });
      }),
    );
    if (inflight.length > 256) await inflight.shift();
  }
  await Promise.all(inflight);
  parentPort!.postMessage({ done: true, achieved: job.total / ((performance.now() - started) / 1000) });
}

function runWriter(job: WriterJob, onResponse: (seq: number, at: number) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: job });
    w.on('message', (m: { seq: number; response: number } | { done: true; achieved: number }) => {
      if ('done' in m) {
        resolve(m.achieved);
        void w.terminate();
      } else {
        onResponse(m.seq, m.response);
      }
    });
    w.on('error', reject);
  });
}

async function main() {
  const cluster = await startCluster();
  try {
    const api = apiserverEndpoint(cluster);
    const services = wholeNumber(values.services!, '--services');
    await setupTopologyServices(cluster, api, services);
    const kubeconfig = await installWrapperRbac(cluster);
    const wrapper = await startWrapperUnderTest(cluster, {
      cmd: values['wrapper-cmd'],
      url: values['wrapper-url'],
      nodeName: WRAPPER_NODE,
      kubeconfig,
    });
    const wrapperEp: Endpoint = { url: wrapper.url };

    const samples = new Map<number, Sample>();
    // Endpoints of another NodeUnit than the wrapper's, seen through the wrapper and on the apiserver.
    const foreign = { wrapper: 0, direct: 0 };
    const foreignIn = (slice: { endpoints?: { nodeName?: string }[] } | undefined) =>
      (slice?.endpoints ?? []).filter((e) => e.nodeName && zoneOf(e.nodeName) !== zoneOf(WRAPPER_NODE)).length;
    const record = (key: 'direct' | 'wrapper') => (ev: WatchEvent) => {
      if (ev.type === 'BOOKMARK' || ev.type === 'ERROR') return;
      foreign[key] += foreignIn(ev.object);
      const seq = Number(ev.object?.metadata?.annotations?.[SEQ] ?? 0);
      const s = samples.get(seq);
      // ev.at is performance.now() of this thread when the chunk arrived.
      if (s && s[key] === undefined) s[key] = performance.timeOrigin + ev.at;
    };
    // As kube-proxy: list, then watch from the list's resourceVersion, with its label selector.
    const query = { labelSelector: KUBE_PROXY_SELECTOR };
    type List = { items: { endpoints?: { nodeName?: string }[] }[]; metadata: { resourceVersion?: string } };
    const directList = await requestOk<List>(api, 'GET', withQuery(SLICES, query));
    const wrapperList = await requestOk<List>(wrapperEp, 'GET', withQuery(SLICES, query));
    for (const item of directList.items) foreign.direct += foreignIn(item);
    for (const item of wrapperList.items) foreign.wrapper += foreignIn(item);
    const watchPath = (rv: string | undefined) => withQuery(SLICES, { ...query, watch: 1, allowWatchBookmarks: true, resourceVersion: rv });
    const direct = new WatchStream(api, watchPath(directList.metadata.resourceVersion), record('direct'));
    const through = new WatchStream(wrapperEp, watchPath(wrapperList.metadata.resourceVersion), record('wrapper'));
    await Promise.all([direct.opened, through.opened]);
    const path = `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`;

    const rows: string[][] = [];
    const results: Record<string, unknown>[] = [];
    let seq = 1;
    for (const rate of rates) {
      const total = Math.round(rate * seconds);
      const first = seq;
      for (let q = first; q < first + total; q++) samples.set(q, { response: 0 });
      const achieved = await runWriter({ api, path, rate, total, firstSeq: first, services }, (q, at) => {
        samples.get(q)!.response = at;
      });
      seq += total;
      await new Promise((r) => setTimeout(r, 2000));
      const d: number[] = [];
      const w: number[] = [];
      const added: number[] = [];
      const missing = { direct: 0, wrapper: 0 };
      for (let q = first; q < seq; q++) {
        const s = samples.get(q)!;
        if (s.direct === undefined) missing.direct++;
        if (s.wrapper === undefined) missing.wrapper++;
        if (s.direct === undefined || s.wrapper === undefined) continue;
        d.push(s.direct - s.response);
        w.push(s.wrapper - s.response);
        added.push(s.wrapper - s.direct);
      }
      const f = (x: number) => `${x.toFixed(2)} ms`;
      rows.push(
        [
          `${rate}/s (achieved ${achieved.toFixed(0)}/s, ${total} updates${missing.direct + missing.wrapper ? `; unseen: ${missing.direct} direct, ${missing.wrapper} through wrapper` : ''})`,
          'apiserver watch (floor)',
          f(percentile(d, 50)),
          f(percentile(d, 99)),
          f(Math.max(...d)),
          '',
        ],
        ['', 'through wrapper', f(percentile(w, 50)), f(percentile(w, 99)), f(Math.max(...w)), ''],
        [
          '',
          'added by wrapper',
          f(percentile(added, 50)),
          f(percentile(added, 99)),
          f(Math.max(...added)),
          percentile(d, 50) > 0 ? `p50 ratio ${(percentile(w, 50) / percentile(d, 50)).toFixed(2)}` : 'p50 ratio n/a: floor p50 ≤ 0',
        ],
      );
      results.push({ rate, achieved, total, missing, direct: d, wrapper: w, added });
    }
    // A watch the server ended mid-run leaves its later events unseen: the percentiles above are of
    // the survivors and prove nothing. A wrapper that let another unit's endpoints through did not
    // do the work being timed. Either makes the run invalid.
    const invalid: string[] = [];
    if (direct.closed) invalid.push('the apiserver ended the direct watch during the run');
    if (through.closed) invalid.push('the wrapper ended its watch during the run');
    if (foreign.wrapper > 0)
      invalid.push(`not filtering: ${foreign.wrapper} endpoints of another NodeUnit arrived through the wrapper (list and events)`);
    if (foreign.direct === 0) invalid.push('the apiserver sent no endpoint of another NodeUnit: the filtering check checked nothing');
    direct.close();
    through.close();
    for (const why of invalid) rows.push(['INVALID', why, '', '', '', '']);
    printTable(
      `wrapper propagation latency, from the write's response to the event's arrival (${machine()})${invalid.length ? ' — INVALID RUN' : ''}`,
      ['rate', 'watch', 'p50', 'p99', 'max', ''],
      rows,
    );
    writeJson(values.out, {
      benchmark: 'wrapper-latency',
      machine: machine(),
      date: new Date().toISOString(),
      valid: invalid.length === 0,
      invalid,
      foreignEndpoints: foreign,
      results,
    });
    if (invalid.length) process.exitCode = 1;
  } finally {
    await cluster.stop();
  }
}

if (!isMainThread) await writer(workerData as WriterJob);
else if (import.meta.url === `file://${process.argv[1]}`) await main();
