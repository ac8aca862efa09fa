// application-grid-wrapper: wires flags, the upstream client, the view and the HTTP servers.
import { pino } from 'pino';
import {
  durationFlag,
  enumFlag,
  formatListenAddress,
  intFlag,
  type ListenAddress,
  listenFlag,
  parseCommandLine,
  stringFlag,
} from '../kube/flags.ts';
import { loadInCluster, loadKubeconfig } from './kubeconfig.ts';
import { WrapperMetrics } from './metrics.ts';
import { apiVersionOf, SERVED_RESOURCES } from './resources.ts';
import { RvClock, ServedResource } from './served.ts';
import { buildServer } from './server.ts';
import { Reflector, Upstream } from './upstream.ts';
import { NodeUnitView, type ServedStores } from './view.ts';

const flags = parseCommandLine({
  program: 'application-grid-wrapper',
  summary: "Serves kube-proxy's list/watch with the endpoints of other NodeUnits removed.",
  flags: {
    listen: listenFlag({ default: '127.0.0.1:51006', help: 'Address kube-proxy connects to (resources, /healthz, /readyz, /metrics).' }),
    'node-name': stringFlag({ default: process.env.NODE_NAME ?? '', help: 'Name of the node this wrapper serves. Default: $NODE_NAME.' }),
    kubeconfig: stringFlag({ help: 'Path to a kubeconfig for the apiserver. Default: the first file of $KUBECONFIG, then in-cluster.' }),
    'metrics-bind-address': listenFlag({
      default: '0',
      disable: true,
      help: 'A second address serving only /healthz, /readyz and /metrics (e.g. for probes).',
    }),
    'bookmark-interval': durationFlag({ default: '60s', min: '1s', max: '1h', help: 'How often watches that allow bookmarks get one.' }),
    'event-log-size': intFlag({
      default: 10_000,
      min: 100,
      max: 10_000_000,
      help: 'Events kept per resource to resume watches from; older resourceVersions get 410 Expired.',
    }),
    'log-level': enumFlag({ values: ['trace', 'debug', 'info', 'warn', 'error', 'fatal'], default: 'info', help: 'Log level.' }),
  },
  check: (f) => (f['node-name'] ? undefined : 'no node name: set --node-name or NODE_NAME'),
});

const log = pino({ name: 'application-grid-wrapper', level: flags['log-level'] });
const nodeName = flags['node-name'];
// An empty host means every interface, as `:8080` does for Go programs.
const listenOptions = (a: ListenAddress) => ({ host: a.host || '0.0.0.0', port: a.port });

// Credentials: --kubeconfig, else the first file of $KUBECONFIG, else the in-cluster ServiceAccount.
// In a cluster the DaemonSet points KUBERNETES_SERVICE_HOST/PORT at the control-plane endpoint,
// not the `kubernetes` ClusterIP that kube-proxy itself programs.
const kubeconfigFile = flags.kubeconfig || process.env.KUBECONFIG?.split(':').find(Boolean);
let upstream: Upstream;
try {
  upstream = new Upstream(kubeconfigFile ? loadKubeconfig(kubeconfigFile) : loadInCluster());
} catch (err) {
  log.fatal({ err: (err as Error).message }, 'cannot load upstream credentials');
  process.exit(2);
}

const metrics = new WrapperMetrics();
const clock = new RvClock();
const logSize = flags['event-log-size'];
const served = Object.fromEntries(
  SERVED_RESOURCES.map((spec) => [
    spec.resource,
    new ServedResource(spec.resource, clock, { kind: spec.kind, apiVersion: apiVersionOf(spec), logSize, metrics }),
  ]),
) as unknown as ServedStores & Record<string, ServedResource>;
for (const s of Object.values(served)) {
  s.onSlowWatcher = () =>
    log.warn({ resource: s.resource }, 'closing a watch whose client does not keep up; it will resume from its last resourceVersion');
}
const view = new NodeUnitView(nodeName, served, log.child({ component: 'view', node: nodeName }), metrics);
const reflectors = SERVED_RESOURCES.map((spec) => new Reflector(spec, upstream, view, log.child({ component: 'upstream' }), metrics));

let ready = false;
const state = {
  specs: SERVED_RESOURCES,
  served,
  ready: () => ready,
  upstream,
  metrics,
  log,
  bookmarkIntervalMs: flags['bookmark-interval'],
  minWatchTimeoutSeconds: 1800,
};

const app = await buildServer(state, { withResources: true });
await app.listen(listenOptions(flags.listen));
const metricsAddress = flags['metrics-bind-address'];
const metricsApp = metricsAddress ? await buildServer(state, { withResources: false }) : undefined;
if (metricsApp && metricsAddress) await metricsApp.listen(listenOptions(metricsAddress));
log.info(
  { listen: formatListenAddress(flags.listen), node: nodeName, upstream: upstream.server.origin, firstResourceVersion: clock.start },
  'listening',
);

const shutdown = async (signal: string) => {
  log.info({ signal }, 'shutting down');
  // Never outlive a stop request because some connection lingers.
  setTimeout(() => process.exit(0), 5_000).unref();
  for (const r of reflectors) r.stop();
  await Promise.allSettled([app.close(), metricsApp?.close()]);
  process.exit(0);
};
// Registered before the first sync: a wrapper that cannot reach its apiserver must still stop.
process.once('SIGTERM', () => void shutdown('SIGTERM'));
process.once('SIGINT', () => void shutdown('SIGINT'));

for (const r of reflectors) r.start();
await Promise.all(reflectors.map((r) => r.synced));
ready = true;
log.info({ counts: Object.fromEntries(Object.entries(served).map(([k, s]) => [k, s.count])) }, 'caches synced; ready');
