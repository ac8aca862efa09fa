// Edge autonomy: a node keeps routing inside its NodeUnit while the link between its wrapper and
// the apiserver is down, through wrapper restarts and an offline reboot, and converges when the
// link returns. A TCP relay stands for the link; the cloud (the apiserver, written to directly)
// keeps changing while it is cut. kube-proxy is real, in a network namespace of its own.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, watch, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { pino } from 'pino';
import { ANNOTATION_TOPOLOGY_KEYS } from '../controllers/api/v1alpha1.ts';
import { SERVED_RESOURCES } from '../wrapper/resources.ts';
import { StateStore } from '../wrapper/state.ts';
import { useCluster } from './cluster/cluster.ts';
import type { KubeProxy } from './cluster/kube-proxy.ts';
import { waitFor } from './cluster/processes.ts';
import { type Relay, startRelay } from './cluster/relay.ts';
import {
  httpText,
  installWrapperRbac,
  kubeProxyEndpointIps,
  RawWatch,
  type RunningWrapper,
  sleep,
  startWrapper,
  WRAPPER_NAMESPACE,
  WRAPPER_SA,
} from './wrapper-harness.ts';

const cluster = useCluster({});
const ns = 'autonomy';
const NODE = 'edge-a';
const TRIGGER_TIME = 'endpoints.kubernetes.io/last-change-trigger-time';
const RESOURCES = SERVED_RESOURCES.map((s) => s.resource);
// Frequent snapshots so that what a test changed is on disk within a fraction of a second.
const FAST_STATE = ['--state-interval=100ms'];

const service = (name: string, marked: boolean) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: ns, annotations: marked ? { [ANNOTATION_TOPOLOGY_KEYS]: '["zone"]' } : {} },
  spec: { ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }] },
});
const slice = (name: string, svc: string, eps: [string, string][], annotations: Record<string, string> = {}) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': svc }, annotations },
  addressType: 'IPv4',
  ports: [{ name: '', port: 8080, protocol: 'TCP' }],
  endpoints: eps.map(([ip, nodeName]) => ({ addresses: [ip], nodeName, conditions: { ready: true, serving: true, terminating: false } })),
});

async function metric(url: string, name: string, labels = ''): Promise<number> {
  const body = (await httpText(`${url}/metrics`)).body;
  const line = body.split('\n').find((l) => l.startsWith(labels ? `${name}{${labels}} ` : `${name} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}
const listsServed = async (w: RunningWrapper) => {
  let total = 0;
  for (const r of RESOURCES) total += await metric(w.url, 'servicegroup_wrapper_list_requests_total', `resource="${r}"`);
  return total;
};

/** Waits until kube-proxy's rules give each Service exactly these endpoint IPs; returns how long it took. */
async function rulesUntil(proxy: KubeProxy, want: Record<string, string[]>, timeoutMs = 30_000): Promise<number> {
  const started = Date.now();
  let last = '';
  await waitFor(
    `${proxy.nodeName} rules ${JSON.stringify(want)}`,
    async () => {
      const rules = await proxy.rules();
      const got = Object.fromEntries(Object.keys(want).map((svc) => [svc, kubeProxyEndpointIps(rules, ns, svc)]));
      last = JSON.stringify(got);
      return last === JSON.stringify(want) ? true : undefined;
    },
    { timeoutMs, intervalMs: 100 },
  ).catch((err) => {
    throw new Error(`${(err as Error).message}; last seen ${last}`);
  });
  return Date.now() - started;
}

/** Checks for `ms` that the rules stay exactly as given (the node keeps routing while cut off). */
async function rulesStay(proxy: KubeProxy, want: Record<string, string[]>, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const rules = await proxy.rules();
    const got = Object.fromEntries(Object.keys(want).map((svc) => [svc, kubeProxyEndpointIps(rules, ns, svc)]));
    assert.deepEqual(got, want, 'rules changed while the apiserver was unreachable');
    await sleep(250);
  }
}

const logLines = (w: { logFile: string }) =>
  readFileSync(w.logFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      try {
        return JSON.parse(l) as { msg: string; err?: { message: string }; [k: string]: unknown };
      } catch {
        return { msg: l };
      }
    });

describe('edge autonomy of the application-grid-wrapper', () => {
  let relay: Relay;
  let viaRelay: string;
  let admin: k8s.CoreV1Api;
  let discovery: k8s.DiscoveryV1Api;

  before(async () => {
    const c = cluster();
    await installWrapperRbac(c);
    const api = new URL(c.server);
    relay = await startRelay({ host: api.hostname, port: Number(api.port) });
    viaRelay = await c.kubeconfigForServiceAccount(WRAPPER_NAMESPACE, WRAPPER_SA, { server: `https://127.0.0.1:${relay.port}` });
    admin = c.kubeConfig().makeApiClient(k8s.CoreV1Api);
    discovery = c.kubeConfig().makeApiClient(k8s.DiscoveryV1Api);
    await c.apply([
      { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE, labels: { zone: 'a' } } },
      { apiVersion: 'v1', kind: 'Node', metadata: { name: 'edge-b', labels: { zone: 'b' } } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } },
      service('grid', true),
      service('gone', false),
      service('all', false),
      slice(
        'grid-1',
        'grid',
        [
          ['10.7.0.1', NODE],
          ['10.7.0.2', 'edge-b'],
        ],
        { [TRIGGER_TIME]: '2026-01-02T03:04:05Z' },
      ),
      slice('gone-1', 'gone', [['10.8.0.1', NODE]]),
      slice('all-1', 'all', [
        ['10.9.0.1', NODE],
        ['10.9.0.2', 'edge-b'],
      ]),
    ]);
    // The node's address, as its kubelet would report it: without one kube-proxy waits 30 s for it
    // before programming anything.
    const patched = await c.kubectl([
      'patch',
      'node',
      NODE,
      '--subresource=status',
      '--type=merge',
      '-p',
      '{"status":{"addresses":[{"type":"InternalIP","address":"192.0.2.10"}]}}',
    ]);
    assert.equal(patched.code, 0, patched.stderr);
  });

  after(async () => {
    await relay?.close();
  });

  test('filtered slices keep the last-change-trigger-time annotation', async () => {
    const w = await startWrapper(cluster(), { nodeName: NODE, kubeconfig: viaRelay });
    try {
      const s = JSON.parse((await httpText(`${w.url}/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices/grid-1`)).body);
      assert.deepEqual(
        s.endpoints.map((e: { addresses: string[] }) => e.addresses[0]),
        ['10.7.0.1'],
      );
      assert.equal(s.metadata.annotations[TRIGGER_TIME], '2026-01-02T03:04:05Z');
    } finally {
      await w.stop();
    }
  });

  test('cut off, the node keeps its rules; restored, it converges to the cloud, deletes included, without a kube-proxy relist', async () => {
    const w = await startWrapper(cluster(), { nodeName: NODE, kubeconfig: viaRelay, args: FAST_STATE });
    const proxy = await cluster().startKubeProxy({ nodeName: NODE, target: w.url });
    const watch = new RawWatch(`${w.url}/api/v1/namespaces/${ns}/services?watch=true&resourceVersion=0`);
    try {
      const before = { grid: ['10.7.0.1'], gone: ['10.8.0.1'], all: ['10.9.0.1', '10.9.0.2'] };
      await rulesUntil(proxy, before);
      await watch.ready;
      await watch.until((e) => e.length === 3);
      const lists = await listsServed(w);

      relay.cut();
      await waitFor('the wrapper to notice the cut', async () =>
        (await metric(w.url, 'servicegroup_wrapper_offline')) === 1 ? true : undefined,
      );
      // The cloud changes meanwhile: an endpoint added in unit a and one in unit b, a Service
      // and its slice deleted, a slice emptied.
      await cluster().apply([
        slice('grid-1', 'grid', [
          ['10.7.0.1', NODE],
          ['10.7.0.2', 'edge-b'],
          ['10.7.0.3', NODE],
          ['10.7.0.4', 'edge-b'],
        ]),
        slice('all-1', 'all', []),
      ]);
      await admin.deleteNamespacedService({ name: 'gone', namespace: ns });
      await discovery.deleteNamespacedEndpointSlice({ name: 'gone-1', namespace: ns });
      await rulesStay(proxy, before, 3_000);
      const ready = await httpText(`${w.url}/readyz`);
      assert.equal(ready.status, 200);
      assert.match(ready.body, /apiserver unreachable since .*; serving the last known state/);

      relay.restore();
      const ms = await rulesUntil(proxy, { grid: ['10.7.0.1', '10.7.0.3'], gone: [], all: [] });
      console.log(`[wrapper-autonomy] rules converged ${ms} ms after the link was restored`);
      assert.equal(await listsServed(w), lists, 'kube-proxy did not list again: it got the differences on its watches');
      // Watchers got the differences only: the deleted Service, nothing for the unchanged ones.
      await watch.until((e) => e.some((x) => x.type === 'DELETED'));
      assert.deepEqual(
        watch.events.slice(3).map((e) => `${e.type}:${e.object.metadata.name}`),
        ['DELETED:gone'],
      );
      // Every upstream watch reconnects within its backoff (at most 1 s), not necessarily before
      // the ones kube-proxy's rules depend on.
      await waitFor(
        'the wrapper online again',
        async () => ((await metric(w.url, 'servicegroup_wrapper_offline')) === 0 ? true : undefined),
        { timeoutMs: 5_000 },
      );
    } finally {
      watch.close();
      await proxy.stop();
      await w.stop();
      await cluster().apply([service('gone', false), slice('gone-1', 'gone', [['10.8.0.1', NODE]])]);
    }
  });

  test('offline reboot: wrapper and kube-proxy start while cut off and program the last known rules; restored, they converge', async () => {
    const c = cluster();
    const stateDir = join(c.dir, 'state-offline-reboot');
    let w = await startWrapper(c, { nodeName: NODE, kubeconfig: viaRelay, stateDir, args: FAST_STATE });
    let proxy = await c.startKubeProxy({ nodeName: NODE, target: w.url });
    const known = { grid: ['10.7.0.1', '10.7.0.3'], gone: ['10.8.0.1'], all: [] };
    await rulesUntil(proxy, known);
    await waitFor('a snapshot of what the node routes', async () =>
      (await metric(w.url, 'servicegroup_wrapper_state_writes_total')) > 0 ? true : undefined,
    );
    const rvBefore = Number(JSON.parse((await httpText(`${w.url}/api/v1/services`)).body).metadata.resourceVersion);
    try {
      relay.cut();
      await admin.deleteNamespacedService({ name: 'gone', namespace: ns });
      await discovery.deleteNamespacedEndpointSlice({ name: 'gone-1', namespace: ns });
      await cluster().apply([slice('all-1', 'all', [['10.9.0.5', NODE]])]);
      // The node goes down: kube-proxy and the wrapper stop; its network namespace is gone.
      await proxy.stop();
      await w.stop();

      const started = Date.now();
      w = await startWrapper(c, { nodeName: NODE, kubeconfig: viaRelay, stateDir, args: FAST_STATE });
      const servingMs = Date.now() - started;
      proxy = await c.startKubeProxy({ nodeName: NODE, target: w.url });
      await rulesUntil(proxy, known);
      const programmedMs = Date.now() - started;
      console.log(`[wrapper-autonomy] offline start: serving after ${servingMs} ms; rules programmed ${programmedMs} ms after the start`);
      const ready = await httpText(`${w.url}/readyz`);
      assert.match(ready.body, /apiserver unreachable since .*; serving the saved state of /);
      assert.equal(await metric(w.url, 'servicegroup_wrapper_serving_saved_state'), 1);
      assert.equal(await metric(w.url, 'servicegroup_wrapper_offline'), 1);
      assert.ok((await metric(w.url, 'servicegroup_wrapper_state_age_seconds')) > 0);
      assert.ok(logLines(w).some((l) => l.msg === 'serving the saved state until the apiserver answers'));
      // resourceVersions of this run are above every one of the previous run.
      const listed = JSON.parse((await httpText(`${w.url}/api/v1/services`)).body);
      assert.ok(Number(listed.metadata.resourceVersion) > rvBefore);
      const old = await httpText(`${w.url}/api/v1/services?watch=true&resourceVersion=${rvBefore}`);
      assert.match(old.body, /"code":410/, 'a resourceVersion of the previous run gets 410 Expired');
      // Discovery answered offline too; /version as the apiserver last answered it.
      for (const path of ['/api', '/apis', '/api/v1', '/apis/discovery.k8s.io/v1', '/apis/networking.k8s.io/v1']) {
        assert.equal((await httpText(`${w.url}${path}`)).status, 200, path);
      }
      const version = await httpText(`${w.url}/version`);
      assert.equal(version.status, 200);
      assert.equal(JSON.parse(version.body).gitVersion, JSON.parse(await c.rawGet('/version')).gitVersion);
      const lists = await listsServed(w);

      relay.restore();
      const ms = await rulesUntil(proxy, { grid: ['10.7.0.1', '10.7.0.3'], gone: [], all: ['10.9.0.5'] });
      console.log(`[wrapper-autonomy] after the offline reboot, rules converged ${ms} ms after the link was restored`);
      assert.equal(await listsServed(w), lists, 'kube-proxy did not list again');
      await waitFor('the saved state to be replaced by the apiserver', async () =>
        (await metric(w.url, 'servicegroup_wrapper_serving_saved_state')) === 0 ? true : undefined,
      );
    } finally {
      relay.restore();
      await proxy.stop();
      await w.stop();
      await cluster().apply([service('gone', false), slice('gone-1', 'gone', [['10.8.0.1', NODE]])]);
    }
  });

  test('corrupted state files are never served: the previous generation is, or 503 with a log line', async () => {
    const c = cluster();
    const stateDir = join(c.dir, 'state-corrupt');
    let w = await startWrapper(c, { nodeName: NODE, kubeconfig: viaRelay, stateDir, args: FAST_STATE });
    // Two generations on disk.
    await cluster().apply([service('extra', false)]);
    await waitFor('two generations', async () =>
      readdirSync(stateDir).filter((n) => /^snapshot\.\d+$/.test(n)).length === 2 ? true : undefined,
    );
    await w.stop();
    relay.cut();
    try {
      const gens = readdirSync(stateDir)
        .filter((n) => /^snapshot\.\d+$/.test(n))
        .sort((a, b) => Number(b.split('.')[1]) - Number(a.split('.')[1]));
      const [newest, previous] = gens.map((g) => join(stateDir, g)) as [string, string];
      const newestBytes = readFileSync(newest);
      writeFileSync(newest, newestBytes.subarray(0, Math.floor(newestBytes.length / 2)));
      w = await startWrapper(c, { nodeName: NODE, kubeconfig: viaRelay, stateDir });
      const lines = logLines(w);
      assert.ok(lines.some((l) => l.msg === 'saved state unusable; trying an older generation' && l.err?.message.includes('truncated')));
      const restored = lines.find((l) => l.msg === 'serving the saved state until the apiserver answers');
      assert.equal(restored?.file, previous);
      await w.stop();

      // Every generation unusable: another node's state, and garbage.
      writeFileSync(newest, 'garbage');
      writeFileSync(previous, readFileSync(previous).toString().replace(`"node":"${NODE}"`, '"node":"edge-b"'));
      w = await startWrapper(c, { nodeName: NODE, kubeconfig: viaRelay, stateDir, until: 'healthy' });
      await sleep(1_000);
      assert.equal((await httpText(`${w.url}/readyz`)).status, 503);
      const list = await httpText(`${w.url}/api/v1/services`);
      assert.equal(list.status, 503, 'never an empty list presented as complete');
      const msgs = logLines(w).map((l) => `${l.msg} ${l.err?.message ?? ''}`);
      assert.ok(msgs.some((m) => m.includes('not a wrapper state file')));
      assert.ok(msgs.some((m) => m.includes('state of node "edge-b", not of this node')));
      assert.ok(msgs.some((m) => m.startsWith('no usable saved state')));
    } finally {
      relay.restore();
      await w.stop();
    }
  });

  test('a full, then read-only, state directory: the wrapper keeps serving from memory, logs it and counts it', async () => {
    const c = cluster();
    const mnt = join(c.dir, 'state-tmpfs');
    mkdirSync(mnt, { recursive: true });
    // Smaller than one snapshot of this cluster's objects.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4k', 'tmpfs', mnt]);
    let w: RunningWrapper | undefined;
    try {
      w = await startWrapper(c, { nodeName: NODE, kubeconfig: viaRelay, stateDir: mnt, args: FAST_STATE });
      const url = w.url;
      await waitFor('a failed write', async () =>
        (await metric(url, 'servicegroup_wrapper_state_write_failures_total')) > 0 ? true : undefined,
      );
      // Log lines are written asynchronously: the line may follow the metric by a moment.
      await waitFor(
        'the ENOSPC log line',
        async () =>
          logLines(w!).some((l) => l.msg.startsWith('cannot save state') && /ENOSPC/.test(l.err?.message ?? '')) ? true : undefined,
        { timeoutMs: 5_000, intervalMs: 20 },
      );
      // A later write may be under way at any moment (each change schedules one); a partial file
      // left behind by a failed one would stay for good.
      await waitFor(
        'no partial file left taking the space',
        async () => (readdirSync(mnt).some((n) => n.endsWith('.tmp')) ? undefined : true),
        { timeoutMs: 5_000, intervalMs: 5 },
      );
      // A remount read-only fails (busy) while a file is open for writing: a state write may be
      // under way at this moment. It is retried until none is.
      await waitFor(
        'the state directory remounted read-only',
        async () => {
          try {
            execFileSync('mount', ['-o', 'remount,ro', mnt], { stdio: 'pipe' });
            return true;
          } catch (err) {
            if (/busy/.test(String((err as { stderr?: Buffer }).stderr))) return undefined;
            throw err;
          }
        },
        { timeoutMs: 10_000, intervalMs: 10 },
      );
      const failures = await metric(url, 'servicegroup_wrapper_state_write_failures_total');
      await cluster().apply([service('extra2', false)]);
      await waitFor('another failed write', async () =>
        (await metric(url, 'servicegroup_wrapper_state_write_failures_total')) > failures ? true : undefined,
      );
      await waitFor('the EROFS log line', async () => (logLines(w!).some((l) => /EROFS/.test(l.err?.message ?? '')) ? true : undefined), {
        timeoutMs: 5_000,
        intervalMs: 20,
      });
      const list = JSON.parse((await httpText(`${url}/api/v1/namespaces/${ns}/services`)).body);
      assert.ok(
        list.items.some((s: { metadata: { name: string } }) => s.metadata.name === 'extra2'),
        'still serving, and current',
      );
      assert.ok(w.component.isRunning());
    } finally {
      await w?.stop();
      execFileSync('umount', [mnt]);
    }
  });

  test('SIGKILL at random moments during state writes, 60 times: every start loads a valid state', async () => {
    const c = cluster();
    const stateDir = join(c.dir, 'state-crash');
    // Enough objects that a snapshot takes a while to write, and churn so snapshots keep coming.
    await c.apply(Array.from({ length: 200 }, (_, i) => service(`bulk-${i}`, i % 2 === 0)));
    let churning = true;
    const churn = (async () => {
      for (let i = 0; churning; i++) {
        await admin
          .patchNamespacedService(
            {
              name: `bulk-${i % 200}`,
              namespace: ns,
              body: { metadata: { labels: { round: String(i) } } },
            },
            k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
          )
          .catch(() => {});
        await sleep(20);
      }
    })();
    const store = new StateStore({ dir: stateDir, node: NODE, log: pino({ level: 'silent' }), resources: RESOURCES });
    let duringWrite = 0;
    try {
      for (let round = 0; round < 60; round++) {
        const w = await startWrapper(c, { nodeName: NODE, kubeconfig: viaRelay, stateDir, args: ['--state-interval=10ms'] });
        if (round === 0) {
          await waitFor('a first snapshot', async () => (readdirSync(stateDir).some((n) => /^snapshot\.\d+$/.test(n)) ? true : undefined), {
            timeoutMs: 60_000,
          });
        } else {
          assert.ok(
            logLines(w).some((l) => l.msg === 'serving the saved state until the apiserver answers'),
            `round ${round}: the wrapper started from its saved state`,
          );
        }
        // Kill as a temporary snapshot file appears (a write in progress), or at a random moment.
        const inWrite = round % 3 !== 0;
        await new Promise<void>((resolve) => {
          const kill = () => {
            watcher.close();
            clearTimeout(timer);
            w.component.child.kill('SIGKILL');
            resolve();
          };
          const watcher = watch(stateDir, (_event, name) => {
            if (inWrite && name?.endsWith('.tmp')) setTimeout(kill, Math.random() * 3);
          });
          const timer = setTimeout(kill, inWrite ? 3_000 : Math.random() * 1_000);
        });
        await w.component.exited;
        if (readdirSync(stateDir).some((n) => n.endsWith('.tmp'))) duringWrite++;
        const loaded = store.load();
        assert.ok(loaded, `round ${round}: a valid state is on disk after SIGKILL`);
        assert.ok(
          loaded.objects.some((o) => o.object.metadata.name === 'bulk-199'),
          `round ${round}: the state is complete`,
        );
        assert.ok(store.loadRvCeiling() > 0, `round ${round}: the resourceVersion high-water mark is readable`);
      }
    } finally {
      churning = false;
      await churn;
    }
    console.log(`[wrapper-autonomy] 60 SIGKILLs, ${duringWrite} of them left a snapshot half-written`);
    assert.ok(duringWrite >= 10, `at least some kills interrupted a write (${duringWrite})`);
  });
});
