// What the apiserver alone takes to create a convergence round's objects: the 200 Deployments and
// 201 Services a DeploymentGrid and a ServiceGrid over 200 units render (the project's own render
// functions), POSTed by one client over one HTTP/2 connection with 32 in flight, asking for the
// metadata only in answer, as the controller does; no controller, no watch, no status, no
// NodeUnit. The floor under benchmark 4 (bench/controllers.ts) on the same machine: a controller
// cannot converge faster than the apiserver takes these writes. With --watch the client also
// keeps the controller's caches of Deployments and Services (watches by grid label), and a round
// ends when every object has come back on them.
//   node bench/write-floor.ts [--units 200] [--rounds 5] [--concurrency 32] [--watch] [--out f.json]

import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { type DeploymentGrid, LABEL_GRID, type ServiceGrid } from '../controllers/api/v1alpha1.ts';
import { FIELD_MANAGER } from '../controllers/reconcile/apply.ts';
import { forEachConcurrently } from '../controllers/reconcile/concurrency.ts';
import { DEPLOYMENTS, SERVICES } from '../controllers/reconcile/resources.ts';
import { renderDeploymentGrid } from '../controllers/render/deployment.ts';
import { renderServiceGrid } from '../controllers/render/service.ts';
import { KubeClient } from '../kube/client.ts';
import { Informer } from '../kube/informer.ts';
import { loadKubeconfig } from '../kube/kubeconfig.ts';
import type { KubeObject } from '../kube/objects.ts';
import { startCluster } from '../test/cluster/cluster.ts';
import { benchDeploymentGrid, benchServiceGrid, machine, writeJson } from './lib.ts';
import { median, printTable } from './table.ts';

const { values } = parseArgs({
  options: {
    units: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '32' },
    watch: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});

function positive(flag: 'units' | 'rounds' | 'concurrency'): number {
  const raw = values[flag]!;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

const N = { units: positive('units'), rounds: positive('rounds'), concurrency: positive('concurrency') };

/** Benchmark 4's grids as created, with the uids the owner references of their objects carry. */
function grids(ns: string): { dg: DeploymentGrid; sg: ServiceGrid } {
  const name = 'web';
  const dg = benchDeploymentGrid(ns, name, 'zone');
  const sg = benchServiceGrid(ns, name, 'zone', name);
  return {
    dg: { ...dg, metadata: { ...dg.metadata, uid: '00000000-0000-4000-8000-000000000001' } } as unknown as DeploymentGrid,
    sg: { ...sg, metadata: { ...sg.metadata, uid: '00000000-0000-4000-8000-000000000002' } } as unknown as ServiceGrid,
  };
}

const cluster = await startCluster();
const rounds: { round: number; ms: number; objects: number }[] = [];
const loadBefore = loadavg()[0]!;
try {
  const client = new KubeClient(loadKubeconfig(cluster.adminKubeconfigPath));
  const caches = values.watch
    ? [DEPLOYMENTS, SERVICES].map((r) => new Informer<KubeObject>(client, r, pino({ level: 'warn' }), { labelSelector: LABEL_GRID }))
    : [];
  for (const c of caches) c.start();
  await Promise.all(caches.map((c) => c.synced));
  const cached = () => caches.reduce((n, c) => n + c.size, 0);
  const units = Array.from({ length: N.units }, (_, i) => `z${i}`);
  for (let round = 1; round <= N.rounds; round++) {
    const ns = `floor-${round}`;
    await client.request('POST', '/api/v1/namespaces', { body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } } });
    const { dg, sg } = grids(ns);
    const services = renderServiceGrid(sg, units);
    const writes: { path: string; body: KubeObject }[] = [
      ...renderDeploymentGrid(dg, units).map((u) => ({ path: `/apis/apps/v1/namespaces/${ns}/deployments`, body: u.object as KubeObject })),
      { path: `/api/v1/namespaces/${ns}/services`, body: services.shared as KubeObject },
      ...services.units.map((u) => ({ path: `/api/v1/namespaces/${ns}/services`, body: u.service as KubeObject })),
    ];
    const want = cached() + writes.length;
    const t = performance.now();
    await forEachConcurrently(writes, N.concurrency, async (w) => {
      await client.request('POST', w.path, { query: { fieldManager: FIELD_MANAGER }, body: w.body, answer: 'metadata' });
    });
    while (caches.length > 0 && cached() < want) await new Promise((r) => setTimeout(r, 1));
    const ms = performance.now() - t;
    rounds.push({ round, ms, objects: writes.length });
    console.error(`[bench] round ${round}: ${writes.length} objects created in ${ms.toFixed(0)} ms`);
  }
  for (const c of caches) c.stop();
  client.close();
} finally {
  await cluster.stop();
}

const loadAfter = loadavg()[0]!;
const med = median(rounds.map((r) => r.ms));
printTable(
  `apiserver write floor: ${rounds[0]!.objects} objects of a ${N.units}-unit convergence round, ${N.concurrency} in flight over HTTP/2${values.watch ? ', each seen on a watch' : ''} (${machine()}; load ${loadBefore.toFixed(2)} → ${loadAfter.toFixed(2)})`,
  ['figure', 'value'],
  [
    [
      `create → all objects answered (median of ${rounds.length}: ${rounds.map((r) => r.ms.toFixed(0)).join(', ')} ms)`,
      `${med.toFixed(0)} ms`,
    ],
    ['objects per second', `${((rounds[0]!.objects / med) * 1000).toFixed(0)}`],
  ],
);
if (values.out)
  await writeJson(values.out, {
    benchmark: 'write-floor',
    machine: machine(),
    date: new Date().toISOString(),
    params: { ...N, watch: values.watch },
    median: { ms: med },
    rounds,
    loadAverage1m: { before: loadBefore, after: loadAfter },
  });
