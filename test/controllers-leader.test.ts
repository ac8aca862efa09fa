// Leader election and health of the controller as operators run it: `node controllers/main.ts`
// processes whose apiserver connections go through relays the test hangs or cuts, the fault a
// flaky link or a half-open TCP connection causes. Evidence comes from the apiserver itself: the
// Lease it stores and its audit log of writes.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { KubeClient } from '../kube/client.ts';
import { freePort, useCluster } from './cluster/cluster.ts';
import type { Component } from './cluster/processes.ts';
import { type Relay, startRelay } from './cluster/relay.ts';
import { clientFor, deploymentGrid, installCrds, installRbac, type Obj, root, until } from './controllers-helpers.ts';

const cluster = useCluster({});
const ns = 'leader';
const NAMESPACE = 'servicegroup-system';
const LEASE = `/apis/coordination.k8s.io/v1/namespaces/${NAMESPACE}/leases/servicegroup-controller`;
const LEASE_SECONDS = 4;
const RENEW_DEADLINE_MS = 3_000;

interface Replica {
  id: string;
  user: string;
  relay: Relay;
  process: Component;
  port: number;
  /** When this test saw the process exit (an upper bound of the real exit). */
  exitedAt?: number;
}

let admin: KubeClient;
const replicas: Replica[] = [];

/** A second ServiceAccount bound to the controller's roles, so the audit log tells replicas apart. */
async function addServiceAccount(name: string): Promise<void> {
  const subjects = [{ kind: 'ServiceAccount', name, namespace: NAMESPACE }];
  await cluster().apply([
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: NAMESPACE } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'servicegroup-controller' },
      subjects,
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name, namespace: NAMESPACE },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'servicegroup-controller-leader-election' },
      subjects,
    },
  ]);
}

async function startReplica(id: string, serviceAccount: string, args: string[] = []): Promise<Replica> {
  const c = cluster();
  const relay = await startRelay({ host: '127.0.0.1', port: Number(new URL(c.server).port) });
  const kubeconfig = await c.kubeconfigForServiceAccount(NAMESPACE, serviceAccount, { server: `https://127.0.0.1:${relay.port}` });
  const port = await freePort();
  const process_ = c.startProcess(id, process.execPath, [
    join(root, 'controllers/main.ts'),
    `--kubeconfig=${kubeconfig}`,
    `--identity=${id}`,
    `--metrics-bind-address=127.0.0.1:${port}`,
    `--health-probe-bind-address=127.0.0.1:${port}`,
    `--leader-elect-lease-duration=${LEASE_SECONDS}s`,
    `--leader-elect-renew-deadline=${RENEW_DEADLINE_MS}ms`,
    '--leader-elect-retry-period=500ms',
    ...args,
  ]);
  const r: Replica = { id, user: `system:serviceaccount:${NAMESPACE}:${serviceAccount}`, relay, process: process_, port };
  process_.child.once('exit', () => (r.exitedAt = Date.now()));
  replicas.push(r);
  return r;
}

async function http(r: Replica, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${r.port}${path}`, { signal: AbortSignal.timeout(5_000) });
  return { status: res.status, body: await res.text() };
}

const holder = async () => (await admin.get<Obj>(LEASE).catch(() => undefined))?.spec.holderIdentity as string | undefined;

const grid = (name: string) => deploymentGrid(name, ns);

const deploymentExists = (name: string) =>
  admin.get(`/apis/apps/v1/namespaces/${ns}/deployments/${name}`).then(
    () => true,
    () => false,
  );

describe('controller leader election and health', () => {
  before(async () => {
    const c = cluster();
    await installCrds(c);
    await installRbac(c);
    await addServiceAccount('servicegroup-controller-standby');
    admin = clientFor(c.adminKubeconfigPath);
    // Node objects are all the controller reads of nodes (their labels); no kubelet is needed.
    await c.apply([
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } },
      ...['a', 'b'].map((zone) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name: `leader-${zone}`, labels: { zone } } })),
    ]);
  });

  after(async () => {
    for (const r of replicas) {
      await r.process.stop();
      await r.relay.close();
    }
  });

  test('a leader whose apiserver connection hangs stops acting before the other replica takes over', async () => {
    const a = await startReplica('replica-a', 'servicegroup-controller');
    await until('replica-a leads', async () => (await holder()) === 'replica-a', 60_000);
    const b = await startReplica('replica-b', 'servicegroup-controller-standby');
    await until('replica-b stands by, ready', async () => (await http(b, '/readyz').catch(() => undefined))?.status === 200, 60_000);
    await cluster().apply([grid('before')]);
    await until('replica-a reconciles', async () => (await deploymentExists('before-a')) && (await deploymentExists('before-b')));
    // Settled (status written): what replica-a still sends from now on is lease renewals.
    await until('replica-a reports the grid', async () => {
      const g = await admin.get<Obj>(`/apis/servicegroup.io/v1alpha1/namespaces/${ns}/deploymentgrids/before`);
      return g.status?.observedGeneration === g.metadata.generation && g.status?.totalUnits === 2;
    });

    const hungAt = Date.now();
    a.relay.hang();
    await until('replica-b takes the lease over', async () => (await holder()) === 'replica-b', 30_000);
    const lease = await admin.get<Obj>(LEASE);
    const acquiredAt = Date.parse(lease.spec.acquireTime);
    await cluster().apply([grid('after')]);
    await until('replica-b reconciles', async () => (await deploymentExists('after-a')) && (await deploymentExists('after-b')), 30_000);
    // The link heals: whatever replica-a still had queued would reach the apiserver now.
    a.relay.restore();
    await until('replica-a exits', async () => a.exitedAt !== undefined, 40_000);
    assert.equal(await a.process.exited, '1', 'losing the lease exits with status 1');

    const exitedAt = a.exitedAt!;
    console.error(
      `[leader] hung at 0 ms; replica-a exited at ${exitedAt - hungAt} ms; replica-b acquired at ${acquiredAt - hungAt} ms (lease ${LEASE_SECONDS}s, renew deadline ${RENEW_DEADLINE_MS} ms)`,
    );
    assert.ok(exitedAt < acquiredAt, `replica-a exited ${exitedAt - acquiredAt} ms after replica-b acquired the lease`);

    // The apiserver's own record: replica-a wrote (the `before` grid), replica-b took over, and no
    // write of replica-a takes effect after replica-b's first. A request replica-a sent into the
    // hung link before it stopped can still reach the apiserver when the link heals (TCP delivers
    // what was sent); the apiserver refuses it: the Lease write carries the resourceVersion that
    // replica-b replaced, and the sender's connection is gone.
    const writes = await cluster().writeRequests();
    const firstOfB = writes.findIndex((w) => w.user === b.user);
    assert.ok(firstOfB >= 0, 'replica-b wrote');
    assert.ok(
      writes.slice(0, firstOfB).some((w) => w.user === a.user && w.resource === 'deployments'),
      'replica-a wrote deployments before',
    );
    const late = writes.slice(firstOfB).filter((w) => w.user === a.user);
    if (late.length) console.error(`[leader] requests of replica-a delivered after the takeover: ${JSON.stringify(late)}`);
    assert.deepEqual(
      late.filter((w) => w.code < 300),
      [],
      'writes of replica-a that took effect after replica-b became leader',
    );
    assert.ok(writes.some((w) => w.user === b.user && w.resource === 'deployments' && w.name === 'after-a'));
    const b2 = await http(b, '/metrics');
    assert.match(b2.body, /^leader_election_master_status\{name="servicegroup-controller"\} 1$/m);
    await b.process.stop();
  });

  test('/healthz fails once a watch has failed for the grace period, /readyz at once; both recover', async () => {
    const c = await startReplica('replica-c', 'servicegroup-controller', ['--leader-elect=false', '--watch-failure-grace-period=3s']);
    await until('replica-c ready', async () => (await http(c, '/readyz').catch(() => undefined))?.status === 200, 60_000);
    assert.equal((await http(c, '/healthz')).status, 200);

    c.relay.cut();
    await until('replica-c not ready', async () => (await http(c, '/readyz')).status === 503, 30_000);
    // Every cache names itself and why. Each cache's grace period starts at its own first failure,
    // so on a busy machine they cross it one after another: wait for all of them.
    const caches = [
      'deploymentgrids',
      'servicegrids',
      'statefulsetgrids',
      'nodes',
      'deployments',
      'statefulsets',
      'services',
      'endpointslices',
      'pods',
    ];
    const failing = (body: string, informer: string) => new RegExp(`^\\[-\\]${informer}: list/watch failing for \\d+s: `, 'm').test(body);
    const unhealthy = await until(
      'replica-c unhealthy, naming every cache',
      async () => {
        const h = await http(c, '/healthz');
        return h.status === 500 && caches.every((i) => failing(h.body, i)) ? h.body : undefined;
      },
      30_000,
    );
    for (const informer of caches) assert.ok(failing(unhealthy, informer), informer);
    assert.ok(c.process.isRunning(), 'unhealthy is for the kubelet to act on; the process keeps retrying');

    c.relay.restore();
    await until('replica-c healthy again', async () => (await http(c, '/healthz')).status === 200, 60_000);
    await until('replica-c ready again', async () => (await http(c, '/readyz')).status === 200, 60_000);
  });
});
