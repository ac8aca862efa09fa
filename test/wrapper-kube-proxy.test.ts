// Real kube-proxies, each pointed at its own node's application-grid-wrapper: the rules each one
// programs hold only its NodeUnit's endpoints for a topology-marked Service, follow a relabel,
// and keep every endpoint of an unmarked Service.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ANNOTATION_TOPOLOGY_KEYS } from '../controllers/api/v1alpha1.ts';
import { useCluster } from './cluster/cluster.ts';
import type { KubeProxy } from './cluster/kube-proxy.ts';
import { waitFor } from './cluster/processes.ts';
import { httpText, installWrapperRbac, kubeProxyEndpointIps, type RunningWrapper, startWrapper } from './wrapper-harness.ts';

const cluster = useCluster({});
const ns = 'kp';

const service = (name: string, annotations: Record<string, string>) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: ns, annotations },
  spec: { ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }] },
});
const slice = (name: string, svc: string, eps: [string, string][]) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': svc } },
  addressType: 'IPv4',
  ports: [{ name: '', port: 8080, protocol: 'TCP' }],
  endpoints: eps.map(([ip, nodeName]) => ({ addresses: [ip], nodeName, conditions: { ready: true, serving: true, terminating: false } })),
});

const endpointIps = (rules: string, svc: string) => kubeProxyEndpointIps(rules, ns, svc);

describe('kube-proxy through the application-grid-wrapper', () => {
  const wrappers: RunningWrapper[] = [];
  let proxyA: KubeProxy;
  let proxyB: KubeProxy;

  before(async () => {
    const c = cluster();
    const sa = await installWrapperRbac(c);
    await c.apply([
      { apiVersion: 'v1', kind: 'Node', metadata: { name: 'ka', labels: { zone: 'a' } } },
      { apiVersion: 'v1', kind: 'Node', metadata: { name: 'kb', labels: { zone: 'b' } } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } },
      service('grid', { [ANNOTATION_TOPOLOGY_KEYS]: '["zone"]' }),
      service('all', {}),
      slice('grid-1', 'grid', [
        ['10.5.0.1', 'ka'],
        ['10.5.0.2', 'kb'],
      ]),
      slice('all-1', 'all', [
        ['10.6.0.1', 'ka'],
        ['10.6.0.2', 'kb'],
      ]),
    ]);
    for (const nodeName of ['ka', 'kb']) wrappers.push(await startWrapper(c, { nodeName, kubeconfig: sa }));
    proxyA = await c.startKubeProxy({ nodeName: 'ka', target: wrappers[0]!.url });
    proxyB = await c.startKubeProxy({ nodeName: 'kb', target: wrappers[1]!.url });
  });

  after(async () => {
    await proxyA?.stop();
    await proxyB?.stop();
    for (const w of wrappers) await w.stop();
  });

  const rulesUntil = (proxy: KubeProxy, svc: string, want: string[], timeoutMs = 30_000) =>
    waitFor(
      `${proxy.nodeName}: endpoints of ${ns}/${svc} = ${want}`,
      async () => {
        const got = endpointIps(await proxy.rules(), svc);
        return JSON.stringify(got) === JSON.stringify(want) ? got : undefined;
      },
      { timeoutMs, intervalMs: 250 },
    );

  test('each node routes a marked Service only to its own unit; an unmarked Service everywhere', async () => {
    await rulesUntil(proxyA, 'grid', ['10.5.0.1']);
    await rulesUntil(proxyB, 'grid', ['10.5.0.2']);
    await rulesUntil(proxyA, 'all', ['10.6.0.1', '10.6.0.2']);
    await rulesUntil(proxyB, 'all', ['10.6.0.1', '10.6.0.2']);
  });

  test('after kb is relabelled into unit a, both nodes follow within seconds', async () => {
    const started = Date.now();
    const r = await cluster().kubectl(['label', 'node', 'kb', 'zone=a', '--overwrite']);
    assert.equal(r.code, 0, r.stderr);
    await Promise.all([
      rulesUntil(proxyA, 'grid', ['10.5.0.1', '10.5.0.2'], 15_000),
      rulesUntil(proxyB, 'grid', ['10.5.0.1', '10.5.0.2'], 15_000),
    ]);
    const ms = Date.now() - started;
    console.log(`[wrapper-kube-proxy] rules followed the relabel in ${ms} ms`);
    assert.ok(ms < 15_000);
    // And back: kb alone in unit b again.
    await cluster().kubectl(['label', 'node', 'kb', 'zone=b', '--overwrite']);
    await rulesUntil(proxyB, 'grid', ['10.5.0.2'], 15_000);
    await rulesUntil(proxyA, 'grid', ['10.5.0.1'], 15_000);
    assert.deepEqual(endpointIps(await proxyB.rules(), 'all'), ['10.6.0.1', '10.6.0.2']);
  });

  test('kube-proxy watches everything it needs from the wrapper and is never refused', async () => {
    for (const w of wrappers) {
      const metrics = (await httpText(`${w.url}/metrics`)).body;
      assert.doesNotMatch(metrics, /servicegroup_wrapper_requests_refused_total/, 'no 400/403 answered to kube-proxy');
      for (const resource of ['services', 'endpointslices', 'nodes']) {
        assert.match(
          metrics,
          new RegExp(`servicegroup_wrapper_watchers\\{resource="${resource}"\\} [1-9]`),
          `kube-proxy watches ${resource}`,
        );
      }
    }
  });
});
