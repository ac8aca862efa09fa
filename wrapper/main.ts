// application-grid-wrapper: wires flags, the upstream client, the view and the HTTP servers.
import { mkdirSync } from 'node:fs';
import { KubeClient } from '../kube/client.ts';
import {
  durationFlag,
  enumFlag,
  formatListenAddress,
  intFlag,
  kubeconfigFlag,
  listenFlag,
  parseCommandLine,
  stringFlag,
} from '../kube/flags.ts';
import { collectIdleHeap } from '../kube/idle-gc.ts';
import { loadCredentials } from '../kube/kubeconfig.ts';
import { stdoutLogger } from '../kube/log.ts';
import { apiVersionOf, type GroupVersionResource } from '../kube/objects.ts';
import { Reflector } from '../kube/reflector.ts';
import { DurableView } from './durable-view.ts';
import { WrapperMetrics } from './metrics.ts';
import { NODE_UNITS, NODES, type ResourceSpec, SERVED_RESOURCES } from './resources.ts';
import { RvClock } from './rv-clock.ts';
import { ServedResource } from './served.ts';
import { buildServer } from './server.ts';
import { StateStore } from './state.ts';
import { NodeUnitView, type ServedStores } from './view.ts';

const flags = parseCommandLine({
  program: 'application-grid-wrapper',
  summary: "Serves kube-proxy's list/watch with the endpoints of other NodeUnits removed.",
  flags: {
    listen: listenFlag({ default: '127.0.0.1:51006', help: 'Address kube-proxy connects to (resources, /healthz, /readyz, /metrics).' }),
    'node-name': stringFlag({ default: process.env.NODE_NAME ?? '', help: 'Name of the node this wrapper serves. Default: $NODE_NAME.' }),
    kubeconfig: kubeconfigFlag(),
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
    // kube-proxy holds 3-4 watches; the rest is room for a few other clients on the node.
    'max-watches': intFlag({
      default: 1000,
      min: 1,
      max: 1_000_000,
      help: 'Open watches served at most; more get 429 TooManyRequests with Retry-After.',
    }),
    'state-dir': stringFlag({
      default: '/var/lib/application-grid-wrapper',
      help: 'Folder of the saved state the wrapper serves from at start while the apiserver is unreachable; empty turns it off.',
    }),
    'state-interval': durationFlag({
      default: '30s',
      min: '10ms',
      max: '1h',
      help: 'At most one snapshot of the state per this interval.',
    }),
    membership: enumFlag({
      values: ['nodes', 'nodeunits'],
      default: 'nodes',
      help: 'Where NodeUnit membership comes from: every Node, or NodeUnit member lists and this node.',
    }),
  },
  check: (f) => (f['node-name'] ? undefined : 'no node name: set --node-name or NODE_NAME'),
});

const log = stdoutLogger({ name: 'application-grid-wrapper', level: flags['log-level'] });
const idleHeap = collectIdleHeap({ log });
const nodeName = flags['node-name'];
const membership = flags.membership;
// Everything read upstream (and saved): what is served, plus the NodeUnits when they place nodes.
const upstreamResources = [...SERVED_RESOURCES.map((s) => s.resource), ...(membership === 'nodeunits' ? [NODE_UNITS.resource] : [])];

// In a cluster the DaemonSet points KUBERNETES_SERVICE_HOST/PORT at the control-plane endpoint,
// not the `kubernetes` ClusterIP that kube-proxy itself programs.
let upstream: KubeClient;
try {
  // Lists and watches are HTTP/1.1 streams; the one other request (/version) does not pay for
  // loading HTTP/2 (README, "Benchmarks").
  upstream = new KubeClient(loadCredentials(flags.kubeconfig), { http2: false });
} catch (err) {
  log.fatal({ err }, 'cannot load upstream credentials');
  process.exit(2);
}

const metrics = new WrapperMetrics();
const store = openStateStore(flags['state-dir']);
// resourceVersions of this run start above every one a previous run issued (the high-water mark
// is reserved on disk before a version beyond it is issued).
const clock = new RvClock(Date.now(), store ? { floor: store.loadRvCeiling(), reserve: (ceiling) => store.saveRvCeiling(ceiling) } : {});
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
const view = new NodeUnitView(nodeName, served, log.child({ component: 'view', node: nodeName }), metrics, membership);
const durable = new DurableView({
  view,
  store,
  log: log.child({ component: 'state' }),
  snapshotIntervalMs: flags['state-interval'],
  resources: upstreamResources,
  metrics,
});
const restoreStarted = performance.now();
const restored = durable.restore();
if (restored) {
  log.info(
    {
      file: restored.file,
      generation: restored.header.generation,
      writtenAt: restored.header.writtenAt,
      objects: restored.objects,
      restoreMs: Math.round(performance.now() - restoreStarted),
    },
    'serving the saved state until the apiserver answers',
  );
}
// Retries within a second, so a node converges soon after its link returns; relists (and, when a
// saved state is served, first lists) spread over a random delay, so that a site whose link
// returns does not list all at once.
const RECONNECT = { maxBackoffMs: 1_000, relistJitterMs: 500 };
/** How often an API this apiserver did not serve is looked for again (after an upgrade). */
const ABSENT_RECHECK_MS = 5 * 60_000;
const upstreamLog = log.child({ component: 'upstream' });
// From NodeUnits, the only Node watched is this node's own (as kube-proxy itself does).
const selectorOf = (spec: GroupVersionResource) =>
  spec === NODES && membership === 'nodeunits' ? { fieldSelector: `metadata.name=${nodeName}` } : {};
const reflectorFor = (spec: GroupVersionResource & Pick<ResourceSpec, 'mayBeAbsent'>) =>
  new Reflector(spec, upstream, durable, upstreamLog, {
    metrics,
    ...RECONNECT,
    startJitterMs: restored ? RECONNECT.relistJitterMs : 0,
    onContact: (reached) => (reached ? durable.contact(spec.resource) : durable.lost(spec.resource)),
    absentRecheckMs: spec.mayBeAbsent ? ABSENT_RECHECK_MS : undefined,
    ...selectorOf(spec),
  });
const reflectors = [...SERVED_RESOURCES.map(reflectorFor), ...(membership === 'nodeunits' ? [reflectorFor(NODE_UNITS)] : [])];
for (const r of reflectors) void r.synced.then(() => durable.listed(r.resource.resource));

// With a saved state the wrapper serves at once: a complete state, only older than the apiserver's.
let ready = false;
/** From now on requests are answered; no client can hold a version of an event made before. */
const startServing = () => {
  ready = true;
  for (const s of Object.values(served)) s.forgetEvents();
};
if (restored) startServing();
const state = {
  specs: SERVED_RESOURCES,
  served,
  ready: () => ready,
  upstream,
  metrics,
  log,
  autonomy: durable,
  bookmarkIntervalMs: flags['bookmark-interval'],
  minWatchTimeoutSeconds: 1800,
  maxWatches: flags['max-watches'],
};

const app = buildServer(state, { withResources: true });
await app.listen(flags.listen);
const metricsAddress = flags['metrics-bind-address'];
const metricsApp = metricsAddress ? buildServer(state, { withResources: false }) : undefined;
if (metricsApp && metricsAddress) await metricsApp.listen(metricsAddress);
log.info(
  {
    listen: formatListenAddress(flags.listen),
    node: nodeName,
    membership,
    upstream: upstream.server.origin,
    firstResourceVersion: clock.start,
  },
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
if (!ready) startServing();
// The garbage of the first lists (pages, parsed objects) is freed now rather than at the heap's
// next quiet moment, which a pause between list pages may have already used up.
idleHeap?.collect('initial lists delivered');
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
