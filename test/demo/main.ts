// `npm run demo`: ServiceGroup on the embedded local cluster. Starts the control plane with
// simulated nodes in two NodeUnits, installs the CRDs and the RBAC of the install manifests, runs
// the controller and, per node, a wrapper, a real kube-proxy and a real CoreDNS pointed at it;
// applies the seed's wordpress + mysql grids and mysql as a StatefulSetGrid; shows what each node
// routes to and what its DNS answers; then moves one node to the other NodeUnit and shows the view
// follow. `--once` runs the story without a live view, prints the
// facts it checked and exits non-zero if any failed.
import { parseArgs } from 'node:util';
import { startCluster } from '../cluster/cluster.ts';
import { startDemo } from './story.ts';

const { values } = parseArgs({
  options: {
    once: { type: 'boolean', default: false },
    'no-kube-proxy': { type: 'boolean', default: false },
    'relabel-after': { type: 'string', default: '20' },
  },
});

console.error('[demo] starting the local cluster (builds the Kubernetes binaries first if they are missing) ...');
const cluster = await startCluster({ controllerManager: true, scheduler: true, kwok: true });
console.error(`[demo] cluster folder: ${cluster.dir}`);
let stopping = false;
const shutdown = async (code: number) => {
  if (stopping) return;
  stopping = true;
  await demo?.stop();
  await cluster.stop();
  process.exit(code);
};
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void shutdown(0));

let demo: Awaited<ReturnType<typeof startDemo>> | undefined;
try {
  // kube-proxy needs network namespaces of its own, which only root can make.
  const kubeProxy = !values['no-kube-proxy'] && process.getuid?.() === 0;
  if (!kubeProxy && !values['no-kube-proxy'])
    console.error('[demo] not root: running without kube-proxy (the wrappers still show what each node would route to)');
  demo = await startDemo(cluster, { kubeProxy, log: (m) => console.error(`[demo] ${m}`) });
} catch (err) {
  console.error(`[demo] could not start: ${(err as Error).message}`);
  cluster.keepFiles();
  await shutdown(1);
}

if (values.once) {
  const failed = await demo!.runStory();
  if (failed > 0) cluster.keepFiles();
  await shutdown(failed > 0 ? 1 : 0);
} else {
  console.log(demo!.howToUseKubectl());
  await demo!.live(Number(values['relabel-after']) * 1000);
}
