// The ground every other test stands on: a real control plane with simulated nodes schedules,
// runs and garbage-collects workloads, enforces RBAC, and a real kube-proxy programs rules.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { apiserverEndpoint, ResumableWatch } from '../bench/lib.ts';
import { NODE_LEASE_SECONDS, useCluster } from './cluster/cluster.ts';
import { waitFor } from './cluster/processes.ts';

const cluster = useCluster({ controllerManager: true, scheduler: true, kwok: true });
const ns = 'foundation';
const NODES = ['n1', 'n2', 'n3'];
// Longer than kube-controller-manager's default node-monitor-grace-period (50 s) several times over,
// and than the 2 minutes after which nodes used to lose Ready without a node Lease.
const STAYS_READY_MS = 200_000;

describe('test cluster', () => {
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;
  let discovery: k8s.DiscoveryV1Api;
  let coordination: k8s.CoordinationV1Api;
  // Every Ready condition status each node had, in order, as seen on a watch that lasts the file:
  // the other tests run meanwhile, so checking that nodes stay Ready costs little extra time.
  const readyHistory = new Map<string, { at: number; status: string }[]>();
  let nodeWatch: ResumableWatch | undefined;

  before(async () => {
    const kc = cluster().kubeConfig();
    core = kc.makeApiClient(k8s.CoreV1Api);
    apps = kc.makeApiClient(k8s.AppsV1Api);
    discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
    coordination = kc.makeApiClient(k8s.CoordinationV1Api);
    const observe = (node: k8s.V1Node) => {
      const name = node.metadata?.name ?? '';
      const status = node.status?.conditions?.find((c) => c.type === 'Ready')?.status ?? 'absent';
      const history = readyHistory.get(name) ?? [];
      if (history[history.length - 1]?.status !== status) history.push({ at: Date.now(), status });
      readyHistory.set(name, history);
    };
    // Resumed from its last resourceVersion whenever the apiserver ends it: no transition is missed.
    nodeWatch = new ResumableWatch(
      apiserverEndpoint(cluster()),
      '/api/v1/nodes',
      {},
      (ev) => observe(ev.object),
      (items) => items.forEach(observe),
    );
    await nodeWatch.opened;
    await cluster().createNode('n1', { zone: 'a' });
    await cluster().createNode('n2', { zone: 'a' });
    await cluster().createNode('n3', { zone: 'b' });
    await cluster().apply([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }]);
  });

  after(() => nodeWatch?.close());

  test('reports the pinned Kubernetes version', async () => {
    const version = JSON.parse(await cluster().rawGet('/version'));
    assert.match(version.gitVersion, /^v1\.\d+\.\d+$/);
    const r = await cluster().kubectl(['version', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).serverVersion.gitVersion, version.gitVersion);
  });

  test('kwok keeps simulated nodes Ready', async () => {
    await waitFor('nodes Ready', async () => {
      const nodes = await core.listNode();
      const ready = nodes.items.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      return ready.length === 3 ? true : undefined;
    });
  });

  test('a Deployment pinned to zone=b runs Ready on n3, gets an EndpointSlice, and is garbage-collected', async () => {
    await cluster().apply([
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'web', namespace: ns },
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: 'web' } },
          template: {
            metadata: { labels: { app: 'web' } },
            spec: { nodeSelector: { zone: 'b' }, containers: [{ name: 'web', image: 'example/web:1', ports: [{ containerPort: 8080 }] }] },
          },
        },
      },
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'web', namespace: ns },
        spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] },
      },
    ]);

    const pods = await waitFor(
      'two Ready pods',
      async () => {
        const list = await core.listNamespacedPod({ namespace: ns, labelSelector: 'app=web' });
        const ready = list.items.filter((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
        return ready.length === 2 ? ready : undefined;
      },
      { timeoutMs: 60_000 },
    );
    assert.deepEqual(
      pods.map((p) => p.spec?.nodeName),
      ['n3', 'n3'],
    );
    for (const p of pods) assert.ok(p.status?.podIP, `pod ${p.metadata?.name} has an IP`);

    const slice = await waitFor('an EndpointSlice with two ready endpoints', async () => {
      const list = await discovery.listNamespacedEndpointSlice({ namespace: ns, labelSelector: 'kubernetes.io/service-name=web' });
      const s = list.items[0];
      return s?.endpoints?.length === 2 && s.endpoints.every((e) => e.conditions?.ready) ? s : undefined;
    });
    assert.deepEqual(
      (slice.endpoints ?? []).map((e) => e.nodeName),
      ['n3', 'n3'],
    );
    assert.deepEqual(new Set((slice.endpoints ?? []).flatMap((e) => e.addresses)), new Set(pods.map((p) => p.status?.podIP)));

    await apps.deleteNamespacedDeployment({ name: 'web', namespace: ns });
    await waitFor(
      'ReplicaSets and pods garbage-collected',
      async () => {
        const rs = await apps.listNamespacedReplicaSet({ namespace: ns });
        const pl = await core.listNamespacedPod({ namespace: ns });
        return rs.items.length === 0 && pl.items.length === 0 ? true : undefined;
      },
      { timeoutMs: 60_000 },
    );
  });

  test('RBAC is enforced: no grants → 403; a Role granting list → allowed', async () => {
    const kubeconfig = await cluster().kubeconfigForUser('alice');
    const denied = await cluster().kubectl(['get', 'services', '-n', ns], { kubeconfig });
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /Forbidden|forbidden/);
    assert.match(denied.stderr, /User "alice" cannot list resource "services"/);

    await cluster().apply([
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'Role',
        metadata: { name: 'svc-reader', namespace: ns },
        rules: [{ apiGroups: [''], resources: ['services'], verbs: ['list'] }],
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'alice-svc-reader', namespace: ns },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'svc-reader' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'alice' }],
      },
    ]);
    const allowed = await waitFor('the RoleBinding to take effect', async () => {
      const r = await cluster().kubectl(['get', 'services', '-n', ns, '-o', 'name'], { kubeconfig });
      return r.code === 0 ? r : undefined;
    });
    assert.match(allowed.stdout, /service\/web/);
    // Still nothing beyond the grant.
    const other = await cluster().kubectl(['get', 'pods', '-n', ns], { kubeconfig });
    assert.notEqual(other.code, 0);
  });

  test('ServiceAccount kubeconfigs carry exactly the SA identity', async () => {
    const kubeconfig = await cluster().kubeconfigForServiceAccount(ns, 'robot');
    const r = await cluster().kubectl(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'], { kubeconfig });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `system:serviceaccount:${ns}:robot`);
  });

  test('a real kube-proxy for n3 programs the Service and its endpoints, in its own network namespace', async () => {
    await cluster().apply([
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'echo', namespace: ns },
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: 'echo' } },
          template: {
            metadata: { labels: { app: 'echo' } },
            spec: { nodeSelector: { zone: 'b' }, containers: [{ name: 'echo', image: 'example/echo:1' }] },
          },
        },
      },
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'echo', namespace: ns },
        spec: { selector: { app: 'echo' }, ports: [{ port: 80, targetPort: 8080 }] },
      },
    ]);
    const ips = await waitFor('echo endpoints', async () => {
      const list = await discovery.listNamespacedEndpointSlice({ namespace: ns, labelSelector: 'kubernetes.io/service-name=echo' });
      const addrs = list.items.flatMap((s) => (s.endpoints ?? []).filter((e) => e.conditions?.ready).flatMap((e) => e.addresses));
      return addrs.length === 2 ? addrs : undefined;
    });
    const svc = await core.readNamespacedService({ name: 'echo', namespace: ns });
    const clusterIP = svc.spec?.clusterIP;
    assert.ok(clusterIP);

    const proxy = await cluster().startKubeProxy({ nodeName: 'n3' });
    const rules = await waitFor('kube-proxy rules for foundation/echo', async () => {
      const text = await proxy.rules();
      return text.includes(clusterIP) && ips.every((ip) => text.includes(ip)) ? text : undefined;
    });
    assert.match(rules, new RegExp(`-d ${clusterIP.replaceAll('.', '\\.')}/32 .*foundation/echo`));
    for (const ip of ips) assert.match(rules, new RegExp(`-s ${ip.replaceAll('.', '\\.')}/32 .*foundation/echo`));

    // The host's own network configuration is untouched: no KUBE chains here.
    const { execFile } = await import('node:child_process');
    const host = await new Promise<string>((resolve) => execFile('iptables-save', (_e, out) => resolve(out ?? '')));
    assert.doesNotMatch(host, /KUBE-SERVICES/);
    await proxy.stop();
  });

  test('nodes stay Ready as a kubelet keeps them: a node Lease renewed, Ready for minutes with the default grace period', async () => {
    const firstReady = (name: string) => readyHistory.get(name)?.find((h) => h.status === 'True')?.at;
    await waitFor('every node Ready once', async () => (NODES.every((n) => firstReady(n) !== undefined) ? true : undefined));
    const readySince = Math.max(...NODES.map((n) => firstReady(n) ?? 0));

    await waitFor('the observation window to pass', async () => (Date.now() - readySince > STAYS_READY_MS ? true : undefined), {
      timeoutMs: STAYS_READY_MS + 60_000,
      intervalMs: 1000,
    });
    for (const n of NODES) {
      const history = readyHistory.get(n) ?? [];
      const after = history.slice(history.findIndex((h) => h.status === 'True'));
      assert.deepEqual(
        after.map((h) => h.status),
        ['True'],
        `${n} left Ready: ${after.map((h) => `${h.status} at +${((h.at - readySince) / 1000).toFixed(0)} s`).join(', ')}`,
      );
    }

    const lease = await coordination.readNamespacedLease({ name: 'n1', namespace: 'kube-node-lease' });
    assert.equal(lease.spec?.leaseDurationSeconds, NODE_LEASE_SECONDS);
    const firstRenew = new Date(lease.spec?.renewTime ?? 0).getTime();
    await waitFor(
      'the Lease of n1 to be renewed',
      async () => {
        const l = await coordination.readNamespacedLease({ name: 'n1', namespace: 'kube-node-lease' });
        return new Date(l.spec?.renewTime ?? 0).getTime() > firstRenew ? true : undefined;
      },
      { timeoutMs: NODE_LEASE_SECONDS * 1000 },
    );
  });
});
