// How long a test file waits for its cluster, and what the full stack costs in memory.
// Prints a table; `--runs N` (default 5), `--out file.json` for the figures.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { startCluster } from '../test/cluster/cluster.ts';
import { waitFor } from '../test/cluster/processes.ts';
import { machine, writeJson } from './lib.ts';
import { median, printTable } from './table.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, out: { type: 'string' } } });
const runs = Number(values.runs);

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

const minimal: number[] = [];
const full: number[] = [];
const memory: Record<string, number>[] = [];
for (let i = 0; i < runs; i++) {
  let t = performance.now();
  const c1 = await startCluster();
  minimal.push(performance.now() - t);
  await c1.stop();

  t = performance.now();
  const c2 = await startCluster({ controllerManager: true, scheduler: true, kwok: true });
  await c2.createNode('bench-node', { zone: 'a' });
  const core = c2.kubeConfig().makeApiClient(k8s.CoreV1Api);
  await waitFor('default ServiceAccount', async () =>
    (await core.listNamespacedServiceAccount({ namespace: 'default' })).items.length ? true : undefined,
  );
  await c2.apply([
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'default' }, spec: { containers: [{ name: 'c', image: 'x' }] } },
  ]);
  await waitFor('pod Ready', async () => {
    const p = await core.readNamespacedPod({ name: 'p', namespace: 'default' });
    return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? true : undefined;
  });
  full.push(performance.now() - t);
  await new Promise((r) => setTimeout(r, 5000));
  memory.push(Object.fromEntries(Object.entries(c2.pids()).map(([name, pid]) => [name, rssMiB(pid)])));
  await c2.stop();
}

const names = Object.keys(memory[0] ?? {});
const rows = [
  ['etcd + kube-apiserver ready', `${(median(minimal) / 1000).toFixed(2)} s`, minimal.map((x) => (x / 1000).toFixed(2)).join(' ')],
  [
    'full stack: a pod Running/Ready on a kwok node',
    `${(median(full) / 1000).toFixed(2)} s`,
    full.map((x) => (x / 1000).toFixed(2)).join(' '),
  ],
  ...names.map((n) => [`RSS ${n}`, `${median(memory.map((m) => m[n] ?? 0)).toFixed(0)} MiB`, '']),
  ['RSS full stack total', `${median(memory.map((m) => Object.values(m).reduce((a, b) => a + b, 0))).toFixed(0)} MiB`, ''],
];
printTable(`cluster start (${runs} runs, median; ${machine()})`, ['what', 'median', 'runs'], rows);
writeJson(values.out, {
  benchmark: 'cluster-start',
  machine: machine(),
  date: new Date().toISOString(),
  minimalMs: minimal,
  fullMs: full,
  rssMiB: memory,
});
