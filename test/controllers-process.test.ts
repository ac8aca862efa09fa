// The controller as its users run it: `node controllers/main.ts` child processes with a
// ServiceAccount kubeconfig bound to exactly the install manifest's RBAC, two replicas with
// leader election on a Lease, metrics and health endpoints.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import type { KubeClient } from '../kube/client.ts';
import { freePort, useCluster } from './cluster/cluster.ts';
import { CONTROLLER_USER, clientFor, deploymentGrid, installCrds, installRbac, type Obj, root, until } from './controllers-helpers.ts';

const cluster = useCluster({ controllerManager: true, kwok: true });
const ns = 'proc';
const LEASE = '/apis/coordination.k8s.io/v1/namespaces/servicegroup-system/leases/servicegroup-controller';
const LEASE_SECONDS = 4;

interface Replica {
  id: string;
  child: ChildProcess;
  port: number;
  output: string[];
}

let admin: KubeClient;
let kubeconfig: string;
const replicas: Replica[] = [];

async function startReplica(id: string): Promise<Replica> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      'controllers/main.ts',
      `--kubeconfig=${kubeconfig}`,
      `--metrics-bind-address=127.0.0.1:${port}`,
      `--health-probe-bind-address=127.0.0.1:${port}`,
      `--identity=${id}`,
      `--leader-elect-lease-duration=${LEASE_SECONDS}s`,
      '--leader-elect-renew-deadline=3s',
      '--leader-elect-retry-period=1s',
      '--resync-period=1m',
    ],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const r: Replica = { id, child, port, output: [] };
  child.stdout!.setEncoding('utf8').on('data', (d: string) => r.output.push(d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => r.output.push(d));
  replicas.push(r);
  return r;
}

async function http(r: Replica, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${r.port}${path}`);
  return { status: res.status, body: await res.text() };
}

describe('controller process', () => {
  before(
    async () => {
      const c = cluster();
      await installCrds(c);
      kubeconfig = await installRbac(c);
      admin = clientFor(c.adminKubeconfigPath);
      await c.apply([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }]);
      await c.createNode('p-a', { zone: 'a' });
      await c.createNode('p-b', { zone: 'b' });
    },
    { timeout: 30 * 60_000 },
  );

  after(() => {
    for (const r of replicas) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
  });

  const grid = (name: string) => deploymentGrid(name, ns);

  async function deploymentExists(name: string): Promise<boolean> {
    try {
      await admin.get(`/apis/apps/v1/namespaces/${ns}/deployments/${name}`);
      return true;
    } catch {
      return false;
    }
  }

  describe('replicas', () => {
    test('two replicas: one leads and reconciles; metrics, health and logs work', async () => {
      const r1 = await startReplica('replica-1');
      await until(
        'replica-1 leads',
        async () => ((await admin.get<Obj>(LEASE).catch(() => undefined))?.spec.holderIdentity === 'replica-1' ? true : undefined),
        30_000,
      );
      const r2 = await startReplica('replica-2');
      await until('replica-2 serves health', async () => (await http(r2, '/healthz').catch(() => ({ status: 0 }))).status === 200);
      await cluster().apply([grid('one')]);
      await until('one-a and one-b', async () => (await deploymentExists('one-a')) && (await deploymentExists('one-b')));
      assert.equal((await admin.get<Obj>(LEASE)).spec.holderIdentity, 'replica-1', 'the first replica still leads');

      assert.equal((await http(r1, '/healthz')).status, 200);
      await until('leader ready', async () => (await http(r1, '/readyz')).status === 200);
      assert.equal((await http(r2, '/readyz')).status, 200, 'a standby is ready: it can take over');
      const metrics = (await http(r1, '/metrics')).body;
      assert.match(metrics, /^controller_runtime_reconcile_total\{controller="deploymentgrid",result="success"\} [1-9]/m);
      assert.match(metrics, /^controller_runtime_reconcile_errors_total\{controller="servicegrid"\} 0$/m);
      assert.match(metrics, /^controller_runtime_reconcile_time_seconds_bucket\{le="\+Inf",controller="deploymentgrid"\} [1-9]/m);
      assert.match(metrics, /^workqueue_depth\{name="grids"\} 0$/m);
      assert.match(metrics, /^workqueue_adds_total\{name="grids"\} [1-9]/m);
      assert.match(metrics, /^workqueue_queue_duration_seconds_count\{name="grids"\} [1-9]/m);
      assert.match(metrics, /^workqueue_work_duration_seconds_count\{name="grids"\} [1-9]/m);
      assert.match(metrics, /^workqueue_retries_total\{name="grids"\} \d+$/m);
      assert.match(metrics, /^rest_client_requests_total\{code="200",method="GET",host="127\.0\.0\.1:\d+"\} [1-9]/m);
      assert.match(metrics, /^rest_client_requests_total\{code="201",method="POST",host="127\.0\.0\.1:\d+"\} [1-9]/m);
      assert.match(metrics, /^process_resident_memory_bytes [1-9]/m);
      assert.match(metrics, /^nodejs_eventloop_lag_p99_seconds /m);
      assert.match(metrics, /^nodejs_heap_size_used_bytes [1-9]/m);
      assert.doesNotMatch(metrics, /nodejs_gc_duration_seconds/, 'no GC observer (see README, metrics)');
      assert.match(metrics, /^servicegroup_units\{kind="DeploymentGrid"\} 2$/m);
      assert.match(metrics, /^leader_election_master_status\{name="servicegroup-controller"\} 1$/m);
      assert.match((await http(r2, '/metrics')).body, /^leader_election_master_status\{name="servicegroup-controller"\} 0$/m);
      // A line per sync that wrote objects (at info; one per object only at debug), naming the grid and its objects.
      const written = r1.output
        .join('')
        .split('\n')
        .filter((l) => l.includes('"msg":"Deployment objects written"'))
        .map((l) => JSON.parse(l) as { grid: string; created?: number; objects: string[] })
        .filter((l) => l.grid === 'proc/one');
      assert.equal(
        written.reduce((n, l) => n + (l.created ?? 0), 0),
        2,
        JSON.stringify(written),
      );
      assert.deepEqual(written.flatMap((l) => l.objects).sort(), ['one-a (unit "a")', 'one-b (unit "b")']);
      assert.doesNotMatch(r1.output.join(''), /"msg":"created deployment"/, 'no line per object at info');
      assert.doesNotMatch(r2.output.join(''), /objects written/, 'the standby writes nothing');
    });

    test('killing the leader: the other replica takes over within the lease duration (+ one retry period)', async () => {
      const leaderId = (await admin.get<Obj>(LEASE)).spec.holderIdentity as string;
      const leader = replicas.find((r) => r.id === leaderId)!;
      const other = replicas.find((r) => r.id !== leaderId)!;
      const writesToOne = async () =>
        (await cluster().writeRequests(CONTROLLER_USER)).filter((w) => w.resource === 'deployments' && w.name?.startsWith('one-')).length;
      const oneBefore = await writesToOne();
      const killedAt = Date.now();
      leader.child.kill('SIGKILL');
      await until('other replica holds the lease', async () => (await admin.get<Obj>(LEASE)).spec.holderIdentity === other.id, 30_000);
      const takeoverMs = Date.now() - killedAt;
      console.error(`[failover] ${other.id} took over ${takeoverMs} ms after ${leaderId} was killed (lease ${LEASE_SECONDS}s, retry 1s)`);
      // The standby first sees the lease at some point during its retry period, then waits a full
      // lease duration from then: the bound is lease duration + one retry period.
      assert.ok(takeoverMs <= (LEASE_SECONDS + 1) * 1000 + 500, `takeover took ${takeoverMs} ms`);
      await cluster().apply([grid('two')]);
      await until('new leader reconciles', async () => (await deploymentExists('two-a')) && (await deploymentExists('two-b')), 30_000);
      assert.match((await http(other, '/metrics')).body, /^leader_election_master_status\{name="servicegroup-controller"\} 1$/m);
      // The new leader finds the old leader's objects up to date: it rewrites none of them.
      assert.equal(await writesToOne(), oneBefore);
    });

    test('SIGTERM on the leader releases the lease at once', async () => {
      const standby = await startReplica('replica-3');
      await until('replica-3 up', async () => (await http(standby, '/healthz').catch(() => ({ status: 0 }))).status === 200);
      const leaderId = (await admin.get<Obj>(LEASE)).spec.holderIdentity as string;
      const leader = replicas.find((r) => r.id === leaderId)!;
      assert.ok(leader.child.exitCode === null && leader.child.signalCode === null, `leader ${leaderId} is running`);
      const stoppedAt = Date.now();
      leader.child.kill('SIGTERM');
      await until('replica-3 leads', async () => (await admin.get<Obj>(LEASE)).spec.holderIdentity === 'replica-3', 30_000);
      const ms = Date.now() - stoppedAt;
      console.error(`[failover] graceful handover in ${ms} ms`);
      assert.ok(ms < LEASE_SECONDS * 1000, `handover took ${ms} ms`);
      await until('the old leader exits', async () => leader.child.exitCode !== null, 10_000);
      assert.equal(leader.child.exitCode, 0);
    });
  });
});
