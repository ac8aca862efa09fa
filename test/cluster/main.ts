// `npm run cluster`: a local cluster (etcd, kube-apiserver, controller-manager, scheduler, kwok)
// with simulated nodes in two NodeUnits, kept running until Ctrl-C.
import { parseArgs } from 'node:util';
import { startCluster } from './cluster.ts';

const { values } = parseArgs({
  options: {
    'unit-key': { type: 'string', default: 'zone' },
    units: { type: 'string', default: 'zone-a,zone-b' },
    'nodes-per-unit': { type: 'string', default: '2' },
  },
});
const key = values['unit-key'];
const units = values.units.split(',').filter(Boolean);
const perUnit = Number(values['nodes-per-unit']);
if (!Number.isInteger(perUnit) || perUnit < 1) {
  console.error(`--nodes-per-unit must be a positive integer, got ${values['nodes-per-unit']}`);
  process.exit(2);
}

console.error('[cluster] starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok ...');
const cluster = await startCluster({ controllerManager: true, scheduler: true, kwok: true });
for (const unit of units) {
  for (let i = 1; i <= perUnit; i++) await cluster.createNode(`${unit}-node-${i}`, { [key]: unit });
}
console.log(`
Local cluster is up (${cluster.server}); component logs in ${cluster.logDir}.
Nodes: ${units.map((u) => `${perUnit} with ${key}=${u}`).join(', ')} (simulated by kwok: pods on them become Running with an IP).

  export KUBECONFIG=${cluster.adminKubeconfigPath}
  export PATH=${cluster.binDir}:$PATH
  kubectl get nodes -L ${key}

Ctrl-C stops everything.`);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, async () => {
    if (stopping) return;
    stopping = true;
    console.error('\n[cluster] stopping ...');
    await cluster.stop();
    process.exit(0);
  });
}
setInterval(() => {}, 1 << 30);
