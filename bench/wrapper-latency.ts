// Wrapper benchmark 1: propagation latency. EndpointSlices of topology-marked Services are updated
// at fixed rates; for each update, the time from the write's response to the event's arrival on
// (a) a watch on the apiserver itself, the floor no proxy can beat, and (b) a watch through the
// wrapper. Prints p50/p99/max of both, the added latency and the ratio b/a.
// The writes are made from a worker thread, so that pacing writes and reading their responses
// never delays the reading of the two watches (and vice versa); both watches are read the same way
// on the main thread. Times are performance.timeOrigin + performance.now(), comparable across threads.
//   --rates 100,1000  --seconds 5  --services 50  --wrapper-cmd '...' | --wrapper-url URL  --out f.json
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { type Cluster, startCluster } from '../test/cluster/cluster.ts';
import { installWrapperRbac } from '../test/wrapper-harness.ts';
import { apiserverEndpoint, type Endpoint, machine, requestOk, startWrapperUnderTest, WatchStream, writeJson } from './lib.ts';
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

const NS = 'bench';
const SEQ = 'bench.servicegroup.io/seq';
const NODES = ['lat-a-1', 'lat-a-2', 'lat-b-1', 'lat-b-2'];

export async function setupTopologyServices(cluster: Cluster, api: Endpoint, services: number): Promise<void> {
  await cluster.apply([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } }]);
  for (const n of NODES) {
    await requestOk(api, 'POST', '/api/v1/nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: n, labels: { zone: n.slice(4, 5) } },
    });
  }
  for (let i = 0; i < services; i++) {
    await requestOk(api, 'POST', `/api/v1/namespaces/${NS}/services`, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: `svc-${i}`, annotations: { 'servicegroup.io/topology-keys': '["zone"]' } },
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
    const services = Number(values.services);
    await setupTopologyServices(cluster, api, services);
    const kubeconfig = await installWrapperRbac(cluster);
    const wrapper = await startWrapperUnderTest(cluster, {
      cmd: values['wrapper-cmd'],
      url: values['wrapper-url'],
      nodeName: NODES[0]!,
      kubeconfig,
    });
    const wrapperEp: Endpoint = { url: wrapper.url };

    const samples = new Map<number, Sample>();
    const record =
      (key: 'direct' | 'wrapper') =>
      (ev: { type: string; object: { metadata?: { annotations?: Record<string, string> } }; at: number }) => {
        const seq = Number(ev.object?.metadata?.annotations?.[SEQ] ?? 0);
        const s = samples.get(seq);
        // ev.at is performance.now() of this thread when the chunk arrived.
        if (s && s[key] === undefined) s[key] = performance.timeOrigin + ev.at;
      };
    const path = '/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices';
    const directList = await requestOk<{ metadata: { resourceVersion: string } }>(api, 'GET', path);
    const wrapperList = await requestOk<{ metadata: { resourceVersion: string } }>(wrapperEp, 'GET', path);
    const direct = new WatchStream(api, `${path}?watch=1&resourceVersion=${directList.metadata.resourceVersion}`, record('direct'));
    const through = new WatchStream(
      wrapperEp,
      `${path}?watch=1&resourceVersion=${wrapperList.metadata.resourceVersion}`,
      record('wrapper'),
    );
    await Promise.all([direct.opened, through.opened]);

    const rows: string[][] = [];
    const results: Record<string, unknown>[] = [];
    let seq = 1;
    for (const rate of values.rates.split(',').map(Number)) {
      const total = Math.round(rate * Number(values.seconds));
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
    // A watch the server ended mid-run leaves its later events unseen: say so rather than hide it.
    if (direct.closed) rows.push(['', 'the apiserver ended the direct watch during the run', '', '', '', '']);
    if (through.closed) rows.push(['', 'the wrapper ended its watch during the run', '', '', '', '']);
    direct.close();
    through.close();
    printTable(
      `wrapper propagation latency, from the write's response to the event's arrival (${machine()})`,
      ['rate', 'watch', 'p50', 'p99', 'max', ''],
      rows,
    );
    writeJson(values.out, { benchmark: 'wrapper-latency', machine: machine(), date: new Date().toISOString(), results });
  } finally {
    await cluster.stop();
  }
}

if (!isMainThread) await writer(workerData as WriterJob);
else if (import.meta.url === `file://${process.argv[1]}`) await main();
