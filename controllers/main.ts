// servicegroup-controller: reconciles DeploymentGrids, ServiceGrids and NodeUnits. Wires flags,
// the API client, leader election, the controllers and the metrics/health server.

import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { KubeClient } from '../kube/client.ts';
import { loadCredentials } from '../kube/kubeconfig.ts';
import { LeaderElector } from './leader.ts';
import { ControllerMetrics } from './metrics.ts';
import { NodeUnitController } from './nodeunit/controller.ts';
import { GridController } from './reconcile/controller.ts';
import { startServer } from './server.ts';

function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s);
  if (!m) throw new Error(`invalid duration ${JSON.stringify(s)} (e.g. 30s, 5m)`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
}

const { values: flags } = parseArgs({
  options: {
    kubeconfig: { type: 'string', default: '' },
    'metrics-listen': { type: 'string', default: '127.0.0.1:8080' },
    'leader-elect': { type: 'string', default: 'true' },
    'leader-elect-namespace': { type: 'string', default: 'servicegroup-system' },
    'lease-name': { type: 'string', default: 'servicegroup-controller' },
    'lease-duration': { type: 'string', default: '15s' },
    'renew-deadline': { type: 'string', default: '10s' },
    'retry-period': { type: 'string', default: '2s' },
    'log-level': { type: 'string', default: 'info' },
    'resync-period': { type: 'string', default: '10m' },
    workers: { type: 'string', default: '2' },
    // The apiserver sends a bookmark about every minute on an idle watch; silence longer than this is a dead connection.
    'watch-idle-timeout': { type: 'string', default: '150s' },
    identity: { type: 'string', default: '' },
  },
  allowPositionals: false,
});

const log = pino({ level: flags['log-level'], base: { component: 'servicegroup-controller' } });
const watchIdleTimeoutMs = parseDuration(flags['watch-idle-timeout']!);
if (watchIdleTimeoutMs < 1000) throw new Error(`--watch-idle-timeout must be at least 1s, got ${flags['watch-idle-timeout']}`);
const client = new KubeClient(loadCredentials(flags.kubeconfig));
const identity = flags.identity || `${hostname()}_${process.pid}`;

let controller: GridController | undefined;
let nodeUnits: NodeUnitController | undefined;
let started = false;
const metrics = new ControllerMetrics({
  queueDepth: () => controller?.queue.length ?? 0,
  units: () => controller?.unitTotals() ?? [],
});
client.setResponseObserver((verb) => {
  if (verb !== 'GET') metrics.writes.inc({ verb });
});

const server = await startServer(flags['metrics-listen']!, metrics.registry, {
  healthy: () => true,
  ready: () => started || (leaderElect && elector?.isLeader === false),
});

async function startController(): Promise<void> {
  controller = new GridController({
    client,
    log,
    metrics,
    instance: identity,
    workers: Number(flags.workers),
    resyncPeriodMs: parseDuration(flags['resync-period']!),
    watchIdleTimeoutMs,
  });
  nodeUnits = new NodeUnitController({
    client,
    log,
    deploymentGrids: controller.deploymentGrids,
    serviceGrids: controller.serviceGrids,
    resyncPeriodMs: parseDuration(flags['resync-period']!),
    watchIdleTimeoutMs,
  });
  await Promise.all([controller.start(), nodeUnits.start()]);
  started = true;
}

const leaderElect = flags['leader-elect'] !== 'false';
let elector: LeaderElector | undefined;
if (leaderElect) {
  elector = new LeaderElector({
    client,
    log,
    namespace: flags['leader-elect-namespace']!,
    name: flags['lease-name']!,
    identity,
    leaseDurationMs: parseDuration(flags['lease-duration']!),
    renewDeadlineMs: parseDuration(flags['renew-deadline']!),
    retryPeriodMs: parseDuration(flags['retry-period']!),
  });
  elector.run(
    () => {
      metrics.isLeader.set({}, 1);
      startController().catch((err) => {
        log.fatal({ err }, 'controller failed to start');
        process.exit(1);
      });
    },
    () => {
      metrics.isLeader.set({}, 0);
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
  await server.close();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
log.info({ identity, leaderElect, metrics: flags['metrics-listen'] }, 'started');
