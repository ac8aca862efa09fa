// application-grid-wrapper: wires flags, the upstream client, the view and the HTTP servers.
import { mkdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { KubeClient } from '../kube/client.ts';
import { loadCredentials } from '../kube/kubeconfig.ts';
import { apiVersionOf, type GroupVersionResource } from '../kube/objects.ts';
import { Reflector } from '../kube/reflector.ts';
import { DurableView } from './durable-view.ts';
import { WrapperMetrics } from './metrics.ts';
import { NODE_UNITS, NODES, SERVED_RESOURCES } from './resources.ts';
import { RvClock, ServedResource } from './served.ts';
import { buildServer } from './server.ts';
import { StateStore } from './state.ts';
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
    // kube-proxy holds 3-4 watches; the rest is room for a few other clients on the node.
    'max-watches': { type: 'string', default: '1000' },
    'state-dir': { type: 'string', default: '/var/lib/application-grid-wrapper' },
    'state-interval-seconds': { type: 'string', default: '30' },
    membership: { type: 'string', default: 'nodes' },
  },
});

const log = pino({ name: 'application-grid-wrapper', level: flags['log-level'] });
const nodeName = flags['node-name'];
if (!nodeName) {
  log.fatal('no node name: set --node-name or NODE_NAME');
  process.exit(2);
}

const maxWatches = Number(flags['max-watches']);
if (!/^\d+$/.test(flags['max-watches']) || maxWatches < 1) {
  log.fatal({ flag: 'max-watches', value: flags['max-watches'] }, '--max-watches must be a whole number of at least 1');
  process.exit(2);
}

if (!isMembershipSource(flags.membership)) {
  log.fatal(
    { flag: 'membership', value: flags.membership },
    '--membership must be "nodeunits" (NodeUnit member lists and this node) or "nodes" (every Node)',
  );
  process.exit(2);
}
const membership = flags.membership;
// Everything read upstream (and saved): what is served, plus the NodeUnits when they place nodes.
const upstreamResources = [...SERVED_RESOURCES.map((s) => s.resource), ...(membership === 'nodeunits' ? [NODE_UNITS.resource] : [])];

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

const stateIntervalSeconds = Number(flags['state-interval-seconds']);
if (!(stateIntervalSeconds > 0 && Number.isFinite(stateIntervalSeconds))) {
  log.fatal({ value: flags['state-interval-seconds'] }, '--state-interval-seconds must be a number of seconds above 0');
  process.exit(2);
}
const store = openStateStore(flags['state-dir']);
// resourceVersions of this run start above every one a previous run issued (the high-water mark
// is reserved on disk before a version beyond it is issued).
const clock = new RvClock(Date.now(), store ? { floor: store.loadRvCeiling(), reserve: (ceiling) => store.saveRvCeiling(ceiling) } : {});
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
const durable = new DurableView({
  view,
  store,
  log: log.child({ component: 'state' }),
  snapshotIntervalMs: stateIntervalSeconds * 1000,
  resources: upstreamResources,
});
const restoreStarted = performance.now();
const restored = durable.restore();
if (restored) {
  log.info(
    {
      file: restored.file,
      generation: restored.header.generation,
      writtenAt: restored.header.writtenAt,
      objects: restored.objects.length,
      restoreMs: Math.round(performance.now() - restoreStarted),
    },
    'serving the saved state until the apiserver answers',
  );
}
// Retries within a second, so a node converges soon after its link returns; relists (and, when a
// saved state is served, first lists) spread over a random delay, so that a site whose link
// returns does not list all at once.
const RECONNECT = { maxBackoffMs: 1_000, relistJitterMs: 500 };
const upstreamLog = log.child({ component: 'upstream' });
// From NodeUnits, the only Node watched is this node's own (as kube-proxy itself does).
const selectorOf = (spec: GroupVersionResource) =>
  spec === NODES && membership === 'nodeunits' ? { fieldSelector: `metadata.name=${nodeName}` } : {};
const reflectorFor = (spec: GroupVersionResource) =>
  new Reflector(spec, upstream, durable, upstreamLog, {
    metrics,
    ...RECONNECT,
    startJitterMs: restored ? RECONNECT.relistJitterMs : 0,
    onContact: (reached) => (reached ? durable.contact(spec.resource) : durable.lost(spec.resource)),
    ...selectorOf(spec),
  });
const reflectors = [...SERVED_RESOURCES.map(reflectorFor), ...(membership === 'nodeunits' ? [reflectorFor(NODE_UNITS)] : [])];
for (const r of reflectors) void r.synced.then(() => durable.listed(r.resource.resource));

// With a saved state the wrapper serves at once: a complete state, only older than the apiserver's.
let ready = restored !== undefined;
const state = {
  specs: SERVED_RESOURCES,
  served,
  ready: () => ready,
  upstream,
  metrics,
  log,
  autonomy: durable,
  bookmarkIntervalMs: Number(flags['bookmark-interval-seconds']) * 1000,
  minWatchTimeoutSeconds: 1800,
  maxWatches,
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
  durable.stop();
  await Promise.allSettled([app.close(), metricsApp?.close(), durable.flush()]);
  process.exit(0);
};
// Registered before the first sync: a wrapper that cannot reach its apiserver must still stop.
process.once('SIGTERM', () => void shutdown('SIGTERM'));
process.once('SIGINT', () => void shutdown('SIGINT'));

for (const r of reflectors) r.start();
await Promise.all(reflectors.map((r) => r.synced));
ready = true;
durable.setVersion(await upstream.get('/version').catch(() => durable.version));
log.info({ counts: Object.fromEntries(Object.entries(served).map(([k, s]) => [k, s.count])) }, 'caches synced; ready');

/** The state directory's store, created if missing; undefined (nothing saved) when disabled or unusable. */
function openStateStore(dir: string): StateStore | undefined {
  if (!dir) {
    log.info('no --state-dir: nothing is saved; after a restart the wrapper serves only once the apiserver answers');
    return undefined;
  }
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    log.error({ err, dir }, 'cannot create the state directory; serving from memory only');
  }
  return new StateStore({
    dir,
    node: nodeName,
    log: log.child({ component: 'state' }),
    resources: upstreamResources,
    metrics,
  });
}
