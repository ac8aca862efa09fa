// Wrapper benchmark 1: propagation latency. EndpointSlices of topology-marked Services are updated
// at fixed rates; for each update, the time from the write's response to the event's arrival on
// (a) a watch on the apiserver itself, the floor no proxy can beat, and (b) a watch through the
// wrapper. Prints p50/p99/max of both, the added latency and the ratio b/a.
//   --rates 100,1000  --seconds 5  --services 50  --wrapper-cmd '...' | --wrapper-url URL  --out f.json
import { parseArgs } from 'node:util';
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
    await requestOk(api, 'POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: n, labels: { zone: n.slice(4, 5) } } });
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
    metadata: { name: `svc-${i}-1`, labels: { 'kubernetes.io/service-name': `svc-${i}`, 'endpointslice.kubernetes.io/managed-by': 'bench' }, annotations: { [SEQ]: String(seq) } },
    addressType: 'IPv4',
    ports: [{ port: 80, protocol: 'TCP' }],
    endpoints: NODES.map((n, k) => ({ addresses: [`10.${(seq >> 8) & 255}.${seq & 255}.${i * 4 + k + 1 > 250 ? 250 : i * 4 + k + 1}`], nodeName: n, conditions: { ready: true } })),
  };
}

interface Sample {
  response: number;
  direct?: number;
  wrapper?: number;
}

async function main() {
  const cluster = await startCluster();
  try {
    const api = apiserverEndpoint(cluster);
    const services = Number(values.services);
    await setupTopologyServices(cluster, api, services);
    const kubeconfig = await installWrapperRbac(cluster);
    const wrapper = await startWrapperUnderTest(cluster, { cmd: values['wrapper-cmd'], url: values['wrapper-url'], nodeName: NODES[0]!, kubeconfig });
    const wrapperEp: Endpoint = { url: wrapper.url };

    const samples = new Map<number, Sample>();
    const record = (key: 'direct' | 'wrapper') => (ev: { type: string; object: { metadata?: { annotations?: Record<string, string> } }; at: number }) => {
      const seq = Number(ev.object?.metadata?.annotations?.[SEQ] ?? 0);
      const s = samples.get(seq);
      if (s && s[key] === undefined) s[key] = ev.at;
    };
    const path = '/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices';
    const directList = await requestOk<{ metadata: { resourceVersion: string } }>(api, 'GET', path);
    const wrapperList = await requestOk<{ metadata: { resourceVersion: string } }>(wrapperEp, 'GET', path);
    const direct = new WatchStream(api, `${path}?watch=1&resourceVersion=${directList.metadata.resourceVersion}`, record('direct'));
    const through = new WatchStream(wrapperEp, `${path}?watch=1&resourceVersion=${wrapperList.metadata.resourceVersion}`, record('wrapper'));
    await Promise.all([direct.opened, through.opened]);

    const rows: string[][] = [];
    const results: Record<string, unknown>[] = [];
    let seq = 1;
    for (const rate of values.rates.split(',').map(Number)) {
      const total = Math.round(rate * Number(values.seconds));
      const first = seq;
      const started = performance.now();
      const inflight: Promise<void>[] = [];
      for (let k = 0; k < total; k++, seq++) {
        const due = started + (k * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        const mySeq = seq;
        const i = k % services;
        const s: Sample = { response: 0 };
        samples.set(mySeq, s);
        const p = requestOk(api, 'PUT', `${path}/svc-${i}-1`, sliceOf(i, mySeq)).then(() => {
          s.response = performance.now();
        });
        inflight.push(p);
        if (inflight.length > 256) await inflight.shift();
      }
      await Promise.all(inflight);
      const achieved = total / ((performance.now() - started) / 1000);
      await new Promise((r) => setTimeout(r, 2000));
      const d: number[] = [];
      const w: number[] = [];
      const added: number[] = [];
      let missing = 0;
      for (let q = first; q < seq; q++) {
        const s = samples.get(q)!;
        if (s.direct === undefined || s.wrapper === undefined) {
          missing++;
          continue;
        }
        d.push(s.direct - s.response);
        w.push(s.wrapper - s.response);
        added.push(s.wrapper - s.direct);
      }
      const f = (x: number) => `${x.toFixed(2)} ms`;
      rows.push(
        [`${rate}/s (achieved ${achieved.toFixed(0)}/s, ${total} updates${missing ? `, ${missing} unseen` : ''})`, 'apiserver watch (floor)', f(percentile(d, 50)), f(percentile(d, 99)), f(Math.max(...d)), ''],
        ['', 'through wrapper', f(percentile(w, 50)), f(percentile(w, 99)), f(Math.max(...w)), ''],
        ['', 'added by wrapper', f(percentile(added, 50)), f(percentile(added, 99)), f(Math.max(...added)), `p50 ratio ${(percentile(w, 50) / percentile(d, 50)).toFixed(2)}`],
      );
      results.push({ rate, achieved, total, missing, direct: d, wrapper: w, added });
    }
    direct.close();
    through.close();
    printTable(`wrapper propagation latency, from the write's response to the event's arrival (${machine()})`, ['rate', 'watch', 'p50', 'p99', 'max', ''], rows);
    writeJson(values.out, { benchmark: 'wrapper-latency', machine: machine(), date: new Date().toISOString(), results });
  } finally {
    await cluster.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
