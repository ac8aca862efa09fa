// application-grid-wrapper: wires flags, the upstream client, the view and the HTTP servers.
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { KubeClient } from '../kube/client.ts';
import { loadCredentials } from '../kube/kubeconfig.ts';
import { apiVersionOf } from '../kube/objects.ts';
import { Reflector } from '../kube/reflector.ts';
import { WrapperMetrics } from './metrics.ts';
import { NAMESPACES, NODE_UNITS, NODES, type ResourceSpec, SERVED_RESOURCES } from './resources.ts';
import { RvClock, ServedResource } from './served.ts';
import { buildServer } from './server.ts';
import { isMembershipSource, NodeUnitView, type ServedStores } from './view.ts';

const { values: flags } = parseArgs({
  options: {
    listen: { type: 'string', default: '127.0.0.1:51006' },
    'node-name': { type: 'string', default: process.env.NODE_NAME ?? '' },
    kubeconfig: { type: 'string', default: '' },
    'metrics-listen': { type: 'string', default: '' },
    'log-level': { type: 'string', default: 'info' },
    'bookmark-interval-seconds': { type: 'string', default: '60' },
    'event-log-size': { type: 'string', default: '10000' },
    membership: { type: 'string', default: 'nodes' },
  },
});

const log = pino({ name: 'application-grid-wrapper', level: flags['log-level'] });
const nodeName = flags['node-name'];
if (!nodeName) {
  log.fatal('no node name: set --node-name or NODE_NAME');
  process.exit(2);
}

if (!isMembershipSource(flags.membership)) {
  log.fatal(
    { membership: flags.membership },
    '--membership must be "nodeunits" (NodeUnit member lists and this node) or "nodes" (every Node)',
  );
  process.exit(2);
}
const membership = flags.membership;

const hostPort = (s: string) => {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i) || '127.0.0.1', port: Number(s.slice(i + 1)) };
};

// In a cluster the DaemonSet points KUBERNETES_SERVICE_HOST/PORT at the control-plane endpoint,
// not the `kubernetes` ClusterIP that kube-proxy itself programs.
let upstream: KubeClient;
try {
  upstream = new KubeClient(loadCredentials(flags.kubeconfig));
} catch (err) {
  log.fatal({ err }, 'cannot load upstream credentials');
  process.exit(2);
}

const metrics = new WrapperMetrics();
const clock = new RvClock();
const logSize = Number(flags['event-log-size']);
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
const view = new NodeUnitView(nodeName, served, log.child({ component: 'view', node: nodeName }), metrics, membership);
const upstreamLog = log.child({ component: 'upstream' });
// From NodeUnits, the only Node watched is this node's own (as kube-proxy itself does).
const nodeSelector = (spec: ResourceSpec) =>
  spec === NODES && membership === 'nodeunits' ? { fieldSelector: `metadata.name=${nodeName}` } : {};
const reflectors = [
  ...SERVED_RESOURCES.map((spec) => new Reflector(spec, upstream, view, upstreamLog, { metrics, ...nodeSelector(spec) })),
  ...(membership === 'nodeunits' ? [new Reflector(NODE_UNITS, upstream, view, upstreamLog, { metrics })] : []),
  // Only annotations matter: metadata is enough.
  new Reflector(NAMESPACES, upstream, view, upstreamLog, { metrics, metadataOnly: true }),
];

let ready = false;
const state = {
  specs: SERVED_RESOURCES,
  served,
  ready: () => ready,
  upstream,
  metrics,
  log,
  bookmarkIntervalMs: Number(flags['bookmark-interval-seconds']) * 1000,
  minWatchTimeoutSeconds: 1800,
};

const app = await buildServer(state, { withResources: true });
const listen = hostPort(flags.listen);
await app.listen(listen);
const metricsApp = flags['metrics-listen'] ? await buildServer(state, { withResources: false }) : undefined;
if (metricsApp) await metricsApp.listen(hostPort(flags['metrics-listen']));
log.info(
  { listen: flags.listen, node: nodeName, membership, upstream: upstream.server.origin, firstResourceVersion: clock.start },
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
