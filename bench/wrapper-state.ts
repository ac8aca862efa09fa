// Wrapper benchmark: the durable state behind edge autonomy, at 500 nodes / 5,000 Services /
// 20,000 endpoints. The wrapper reaches the apiserver through a TCP relay the benchmark cuts.
// Measures the state's size on disk; snapshot write time and bytes written per minute under
// steady slice updates; the time from start to serving the saved state while the apiserver is
// unreachable; and the time until a watcher holds every change made in the cloud meanwhile, once
// the link is restored (without and with a wrapper restart while cut off).
//   --nodes 500 --units 50 --services 5000 --endpoints-per-service 4 --rate 100 --seconds 60
//   --state-interval-seconds 30 --changes 100 --deletes 10 --wrapper-cmd '...{state}...' --out f.json
import { readdirSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startCluster } from '../test/cluster/cluster.ts';
import { waitFor } from '../test/cluster/processes.ts';
import { startRelay } from '../test/cluster/relay.ts';
import { installWrapperRbac, WRAPPER_NAMESPACE, WRAPPER_SA } from '../test/wrapper-harness.ts';
import {
  apiserverEndpoint,
  DEFAULT_WRAPPER_CMD,
  type Endpoint,
  inParallel,
  machine,
  request,
  requestOk,
  startWrapperUnderTest,
  WatchStream,
  withQuery,
  writeJson,
} from './lib.ts';
import { nodeName, nodeOfEndpoint, populateScale, SCALE_NS, type ScaleParams, scaleSlice, unitOf } from './scale-objects.ts';
import { median, printTable } from './table.ts';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '500' },
    units: { type: 'string', default: '50' },
    services: { type: 'string', default: '5000' },
    'endpoints-per-service': { type: 'string', default: '4' },
    rate: { type: 'string', default: '100' },
    seconds: { type: 'string', default: '60' },
    'state-interval-seconds': { type: 'string', default: '30' },
    changes: { type: 'string', default: '100' },
    deletes: { type: 'string', default: '10' },
    starts: { type: 'string', default: '3' },
    'wrapper-cmd': { type: 'string' },
    out: { type: 'string' },
  },
});
const N: ScaleParams = {
  nodes: Number(values.nodes),
  units: Number(values.units),
  services: Number(values.services),
  eps: Number(values['endpoints-per-service']),
};
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const SLICES = '/apis/discovery.k8s.io/v1/endpointslices';
const LOCAL = nodeName(0);

async function metric(url: string, name: string): Promise<number> {
  const body = (await request({ url }, 'GET', '/metrics')).body;
  const line = body.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : 0;
}

/** Services whose slice has an endpoint in the wrapper's NodeUnit: a change to them changes what it serves. */
const localServices = Array.from({ length: N.services }, (_, s) => s).filter((s) =>
  Array.from({ length: N.eps }, (_, k) => unitOf(N, nodeOfEndpoint(N, s, k))).includes(unitOf(N, 0)),
);

async function main() {
  const cluster = await startCluster();
  try {
    const api = apiserverEndpoint(cluster);
    const created = await populateScale(api, N);
    console.error(`[bench] created ${N.nodes} nodes, ${N.services} services, ${N.services * N.eps} endpoints in ${created.toFixed(1)} s`);
    await installWrapperRbac(cluster);
    const apiUrl = new URL(cluster.server);
    const relay = await startRelay({ host: apiUrl.hostname, port: Number(apiUrl.port) });
    const kubeconfig = await cluster.kubeconfigForServiceAccount(WRAPPER_NAMESPACE, WRAPPER_SA, {
      server: `https://127.0.0.1:${relay.port}`,
    });
    const stateDir = join(cluster.dir, 'wrapper-state-bench');
    const cmd = `${(values['wrapper-cmd'] ?? DEFAULT_WRAPPER_CMD).replace('{state}', stateDir)} --state-interval=${values['state-interval-seconds']}s`;
    const start = async () => {
      const t = performance.now();
      const w = await startWrapperUnderTest(cluster, { cmd, nodeName: LOCAL, kubeconfig, name: `wrapper-${Date.now()}` });
      return { ...w, ms: performance.now() - t, metrics: w.metricsUrl!.replace(/\/metrics$/, '') };
    };
    const stop = async (pid: number | undefined) => {
      if (!pid) return;
      process.kill(pid, 'SIGTERM');
      await waitFor('the wrapper to exit', async () => {
        try {
          process.kill(pid, 0);
          return undefined;
        } catch {
          return true;
        }
      });
    };
    const figures: Record<string, number> = {};

    let w = await start();
    figures.syncMs = w.ms;
    await waitFor(
      'a first snapshot',
      async () => ((await metric(w.metrics, 'servicegroup_wrapper_state_writes_total')) > 0 ? true : undefined),
      {
        timeoutMs: 120_000,
      },
    );
    figures.stateBytes = await metric(w.metrics, 'servicegroup_wrapper_state_bytes');
    figures.stateDirBytes = readdirSync(stateDir).reduce((sum, f) => sum + statSync(join(stateDir, f)).size, 0);

    // Steady updates: what saving the state costs under churn.
    const before = {
      writes: await metric(w.metrics, 'servicegroup_wrapper_state_writes_total'),
      bytes: await metric(w.metrics, 'servicegroup_wrapper_state_written_bytes_total'),
      seconds: await metric(w.metrics, 'servicegroup_wrapper_state_write_seconds_total'),
    };
    const total = RATE * SECONDS;
    const started = performance.now();
    await inParallel(total, 16, async (k) => {
      const wait = started + (k * 1000) / RATE - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const s = k % N.services;
      await requestOk(
        api,
        'PUT',
        `/apis/discovery.k8s.io/v1/namespaces/${SCALE_NS}/endpointslices/svc-${s}-1`,
        scaleSlice(N, s, 1 + Math.floor(k / N.services)),
      );
    });
    const elapsedMin = (performance.now() - started) / 60_000;
    figures.updatesPerSecond = total / (elapsedMin * 60);
    const writes = (await metric(w.metrics, 'servicegroup_wrapper_state_writes_total')) - before.writes;
    figures.snapshotsPerMinute = writes / elapsedMin;
    figures.bytesWrittenPerMinute =
      ((await metric(w.metrics, 'servicegroup_wrapper_state_written_bytes_total')) - before.bytes) / elapsedMin;
    figures.writeMsMean = writes
      ? (((await metric(w.metrics, 'servicegroup_wrapper_state_write_seconds_total')) - before.seconds) / writes) * 1000
      : Number.NaN;

    /** Cuts the link, changes the cloud, restores, and measures until a watcher holds every change. */
    let round = 0;
    const convergeAfterCut = async (url: string, restartWhileCut: boolean) => {
      round++;
      relay.cut();
      await waitFor('the wrapper to notice', async () => ((await metric(url, 'servicegroup_wrapper_offline')) === 1 ? true : undefined));
      // Different Services each round (a deleted slice stays deleted).
      const C = Number(values.changes);
      const D = Number(values.deletes);
      const changed = localServices.slice((round - 1) * C, round * C);
      const deleted = localServices.slice(localServices.length - round * D, localServices.length - (round - 1) * D);
      const version = 1000 + round;
      await inParallel(changed.length, 16, (i) =>
        requestOk(
          api,
          'PUT',
          `/apis/discovery.k8s.io/v1/namespaces/${SCALE_NS}/endpointslices/svc-${changed[i]}-1`,
          scaleSlice(N, changed[i]!, version),
        ).then(() => {}),
      );
      await inParallel(deleted.length, 16, (i) =>
        requestOk(api, 'DELETE', `/apis/discovery.k8s.io/v1/namespaces/${SCALE_NS}/endpointslices/svc-${deleted[i]}-1`).then(() => {}),
      );
      let serving: { ms: number; url: string } | undefined;
      if (restartWhileCut) {
        await stop(w.pid);
        const starts: number[] = [];
        for (let i = 0; i < Number(values.starts); i++) {
          if (i > 0) await stop(w.pid);
          w = await start();
          starts.push(w.ms);
        }
        figures.offlineStartToServingMs = median(starts);
        serving = { ms: median(starts), url: w.url };
      }
      const ep: Endpoint = { url: w.url };
      const list = await requestOk<{ metadata: { resourceVersion?: string }; items: unknown[] }>(ep, 'GET', SLICES);
      const expected = N.services - (round - 1) * D;
      if (list.items.length !== expected) throw new Error(`served ${list.items.length} slices offline, expected ${expected}`);
      const pending = new Set([...changed.filter((s) => !deleted.includes(s)), ...deleted].map((s) => `svc-${s}-1`));
      let done: () => void = () => {};
      const converged = new Promise<void>((r) => (done = r));
      const ip0 = (s: number) =>
        scaleSlice(N, s, version).endpoints.find((e) => unitOf(N, Number(e.nodeName.slice(5))) === unitOf(N, 0))!.addresses[0];
      const watch = new WatchStream(ep, withQuery(SLICES, { watch: 1, resourceVersion: list.metadata.resourceVersion }), (ev) => {
        const name: string = ev.object.metadata?.name ?? '';
        const s = Number(name.slice(4, -2));
        if (ev.type === 'DELETED' && deleted.includes(s)) pending.delete(name);
        if (ev.type === 'MODIFIED' && ev.object.endpoints?.some((e: { addresses: string[] }) => e.addresses[0] === ip0(s)))
          pending.delete(name);
        if (pending.size === 0) done();
      });
      await watch.opened;
      const t = performance.now();
      relay.restore();
      await Promise.race([
        converged,
        new Promise((_, reject) => setTimeout(() => reject(new Error(`${pending.size} changes not seen in 120 s`)), 120_000)),
      ]);
      const ms = performance.now() - t;
      watch.close();
      return { ms, serving };
    };
    figures.convergeAfterCutMs = (await convergeAfterCut(w.metrics, false)).ms;
    figures.convergeAfterOfflineRestartMs = (await convergeAfterCut(w.metrics, true)).ms;
    await relay.close();

    const load = loadavg()
      .map((x) => x.toFixed(1))
      .join(' ');
    const fig = (k: string) => figures[k] ?? Number.NaN;
    const f = (x: number, unit: string, digits = 1) => (Number.isFinite(x) ? `${x.toFixed(digits)} ${unit}` : 'n/a');
    const MiB = 1024 * 1024;
    printTable(
      `wrapper state: ${N.nodes} nodes / ${N.units} NodeUnits, ${N.services} Services, ${N.services * N.eps} endpoints, snapshots at most every ${values['state-interval-seconds']} s (${machine()}, load ${load})`,
      ['what', 'value', 'target'],
      [
        ['state size on disk (one snapshot)', f(fig('stateBytes') / MiB, 'MiB', 2), ''],
        ['state directory (every file in it)', f(fig('stateDirBytes') / MiB, 'MiB', 2), ''],
        [`snapshots per minute at ${fig('updatesPerSecond').toFixed(0)} updates/s`, f(fig('snapshotsPerMinute'), '', 1), ''],
        ['bytes written per minute at that rate', f(fig('bytesWrittenPerMinute') / MiB, 'MiB', 1), ''],
        ['time per snapshot (encode, write, fsync, rename)', f(fig('writeMsMean'), 'ms', 0), ''],
        ['time to ready with the apiserver reachable (list + sync)', f(fig('syncMs'), 'ms', 0), ''],
        [`start to serving the saved state offline (median of ${values.starts})`, f(fig('offlineStartToServingMs'), 'ms', 0), '≤ 2 s'],
        [
          `link restored → watcher holds ${values.changes} changes + ${values.deletes} deletes (no restart)`,
          f(fig('convergeAfterCutMs'), 'ms', 0),
          '≤ 2 s',
        ],
        ['same after an offline restart (wrapper relists everything)', f(fig('convergeAfterOfflineRestartMs'), 'ms', 0), '≤ 2 s'],
      ],
    );
    writeJson(values.out, {
      benchmark: 'wrapper-state',
      machine: machine(),
      loadavg: loadavg(),
      date: new Date().toISOString(),
      params: { ...N, rate: RATE, seconds: SECONDS, stateIntervalSeconds: Number(values['state-interval-seconds']) },
      figures,
    });
  } finally {
    await cluster.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
