// servicegroup-controller: reconciles DeploymentGrids, ServiceGrids, StatefulSetGrids and
// NodeUnits. Wires flags, the API client, leader election, the controllers and the metrics/health
// server.

import { hostname } from 'node:os';
import { KubeClient } from '../kube/client.ts';
import { boolFlag, durationFlag, enumFlag, intFlag, kubeconfigFlag, listenFlag, parseCommandLine, stringFlag } from '../kube/flags.ts';
import { collectIdleHeap } from '../kube/idle-gc.ts';
import { loadCredentials } from '../kube/kubeconfig.ts';
import { stdoutLogger } from '../kube/log.ts';
import { LeaderElector, leaderElectionConfigProblem } from './leader.ts';
import { ControllerMetrics } from './metrics.ts';
import { NodeUnitController } from './nodeunit/controller.ts';
import { CONTROLLER_WRITE_CONCURRENCY, WriteLimiter } from './reconcile/concurrency.ts';
import { DEFAULT_WORKERS, GridController } from './reconcile/controller.ts';
import { startServers } from './server.ts';

const flags = parseCommandLine({
  program: 'servicegroup-controller',
  summary: 'Reconciles DeploymentGrids, ServiceGrids and StatefulSetGrids (servicegroup.io/v1alpha1).',
  flags: {
    kubeconfig: kubeconfigFlag(),
    'metrics-bind-address': listenFlag({ default: '127.0.0.1:8080', disable: true, help: 'Address to serve /metrics on.' }),
    'health-probe-bind-address': listenFlag({
      default: '127.0.0.1:8081',
      disable: true,
      help: 'Address to serve /healthz and /readyz on (may equal --metrics-bind-address: one server then).',
    }),
    'leader-elect': boolFlag({ default: true, help: 'Run only while holding the leader Lease, so that replicas can stand by.' }),
    'leader-elect-lease-duration': durationFlag({
      default: '15s',
      min: '1s',
      max: '1h',
      help: 'How long standbys wait after the last observed renewal before taking the Lease over.',
    }),
    'leader-elect-renew-deadline': durationFlag({
      default: '10s',
      min: '100ms',
      max: '1h',
      help: 'How long the leader keeps trying to renew before it stops acting (exits); less than the lease duration.',
    }),
    'leader-elect-retry-period': durationFlag({
      default: '2s',
      min: '100ms',
      max: '1h',
      help: 'How long to wait between attempts to acquire or renew the Lease.',
    }),
    'leader-elect-resource-namespace': stringFlag({ default: 'servicegroup-system', help: 'Namespace of the leader Lease.' }),
    'leader-elect-resource-name': stringFlag({ default: 'servicegroup-controller', help: 'Name of the leader Lease.' }),
    identity: stringFlag({ help: 'Name of this replica in the Lease and in events. Default: <hostname>_<pid>.' }),
    workers: intFlag({ default: DEFAULT_WORKERS, min: 1, max: 256, help: 'Grids whose objects are rendered and written concurrently.' }),
    'evict-misplaced-pods': boolFlag({
      default: true,
      help: 'Evict pods a node relabel left in another unit (PodDisruptionBudgets respected); false only reports them in status.',
    }),
    'resync-period': durationFlag({
      default: '10m',
      min: '1s',
      max: '24h',
      zero: true,
      help: 'Re-check every grid from the caches this often (writes nothing when nothing drifted).',
    }),
    'watch-failure-grace-period': durationFlag({
      default: '2m',
      min: '1s',
      max: '24h',
      help: '/healthz fails once a cache has failed to list/watch for longer than this.',
    }),
    // The apiserver sends a bookmark about every minute on an idle watch; silence longer than this is a dead connection.
    'watch-idle-timeout': durationFlag({
      default: '150s',
      min: '1s',
      max: '1h',
      help: 'A watch silent for longer than this (no event, no bookmark) is taken for a dead connection and re-opened.',
    }),
    'log-level': enumFlag({ values: ['trace', 'debug', 'info', 'warn', 'error', 'fatal'], default: 'info', help: 'Log level.' }),
  },
  check: (f) => {
    if (!f['leader-elect']) return undefined;
    const problem = leaderElectionConfigProblem({
      leaseDurationMs: f['leader-elect-lease-duration'],
      renewDeadlineMs: f['leader-elect-renew-deadline'],
      retryPeriodMs: f['leader-elect-retry-period'],
    });
    return problem && `--leader-elect-lease-duration, --leader-elect-renew-deadline, --leader-elect-retry-period: ${problem}`;
  },
});

const log = stdoutLogger({ level: flags['log-level'], base: { component: 'servicegroup-controller' } });
const client = new KubeClient(loadCredentials(flags.kubeconfig));
const identity = flags.identity || `${hostname()}_${process.pid}`;
const lease = flags['leader-elect-resource-name'];

collectIdleHeap({ log });

let controller: GridController | undefined;
let nodeUnits: NodeUnitController | undefined;
const metrics = new ControllerMetrics(
  { queueDepth: () => controller?.queue.length ?? 0, units: () => controller?.unitTotals() ?? [] },
  { queueName: 'grids' },
);
for (const c of ['deploymentgrid', 'servicegrid', 'statefulsetgrid']) metrics.declareController(c);
client.setResponseObserver((method, code, host) => metrics.request(method, code, host));

const elector = flags['leader-elect']
  ? new LeaderElector(client, log, {
      namespace: flags['leader-elect-resource-namespace'],
      name: flags['leader-elect-resource-name'],
      identity,
      leaseDurationMs: flags['leader-elect-lease-duration'],
      renewDeadlineMs: flags['leader-elect-renew-deadline'],
      retryPeriodMs: flags['leader-elect-retry-period'],
    })
  : undefined;

const closeServers = await startServers({ metrics: flags['metrics-bind-address'], health: flags['health-probe-bind-address'] }, metrics, {
  problems: () => controller?.problems(flags['watch-failure-grace-period']) ?? [],
  // A standby is ready: it can take over.
  ready: () => controller?.ready() ?? (elector !== undefined && !elector.isLeader),
});

async function startController(): Promise<void> {
  // One for both controllers: grid objects are written before anything else in the process.
  const writes = new WriteLimiter(CONTROLLER_WRITE_CONCURRENCY);
  controller = new GridController({
    client,
    log,
    metrics,
    instance: identity,
    workers: flags.workers,
    resyncPeriodMs: flags['resync-period'],
    watchIdleTimeoutMs: flags['watch-idle-timeout'],
    evictMisplacedPods: flags['evict-misplaced-pods'],
    writes,
  });
  nodeUnits = new NodeUnitController({
    client,
    log,
    deploymentGrids: controller.deploymentGrids,
    serviceGrids: controller.serviceGrids,
    statefulSetGrids: controller.statefulSetGrids,
    nodes: controller.nodes,
    membership: controller.membership,
    resyncPeriodMs: flags['resync-period'],
    watchIdleTimeoutMs: flags['watch-idle-timeout'],
    writes,
  });
  await Promise.all([controller.start(), nodeUnits.start()]);
}

if (elector) {
  metrics.leader(lease, false);
  elector.run(
    () => {
      metrics.leader(lease, true);
      startController().catch((err) => {
        log.fatal({ err }, 'controller failed to start');
        process.exit(1);
      });
    },
    () => {
      metrics.leader(lease, false);
      // Caches and in-flight syncs may act on a stale view; a fresh process starts clean.
      process.exit(1);
    },
  );
} else {
  await startController();
}

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'shutting down');
  await Promise.all([controller?.stop(), nodeUnits?.stop()]);
  await elector?.stop();
  await closeServers();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
log.info({ identity, leaderElect: flags['leader-elect'], lease: elector ? lease : undefined }, 'started');
