// The application-grid-wrapper against a real apiserver, as a child process with the ServiceAccount
// and RBAC of examples/install/wrapper.yaml, read by real clients (kubectl, a client-node informer,
// raw HTTP list/watch).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { ANNOTATION_TOPOLOGY_KEYS, ANNOTATION_TOPOLOGY_KEYS_SUPEREDGE } from '../controllers/api/v1alpha1.ts';
import type { KubeObject } from '../kube/objects.ts';
import { filterEndpointSlices, topologyKeysOf } from '../wrapper/filter.ts';
import { useCluster } from './cluster/cluster.ts';
import {
  CuttableRelay,
  httpText,
  installWrapperRbac,
  kubeconfigWithServer,
  RawWatch,
  type RunningWrapper,
  sleep,
  startWrapper,
  WRAPPER_NAMESPACE,
  WRAPPER_SA,
} from './wrapper-harness.ts';

const cluster = useCluster({});
const ns = 'grid';
const LOCAL = 'na1';
const KUBE_PROXY_SLICES =
  '/apis/discovery.k8s.io/v1/endpointslices?labelSelector=!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name&limit=500&resourceVersion=0';

type Slice = KubeObject & { endpoints: { addresses: string[]; nodeName?: string; conditions?: { ready?: boolean } }[] };

const node = (name: string, labels: Record<string, string>) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name, labels } });
const service = (name: string, annotations: Record<string, string> = {}) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: ns, annotations },
  spec: { ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }] },
});
const slice = (name: string, svc: string, eps: [string, string | undefined][]) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': svc } },
  addressType: 'IPv4',
  ports: [{ name: '', port: 8080, protocol: 'TCP' }],
  endpoints: eps.map(([ip, nodeName]) => ({ addresses: [ip], conditions: { ready: true }, ...(nodeName ? { nodeName } : {}) })),
});
// The apiserver serializes an empty endpoint list as null.
const ipsOf = (s: Slice) => (s.endpoints ?? []).map((e) => e.addresses[0]).sort();
const zone = (v: string) => ({ [ANNOTATION_TOPOLOGY_KEYS]: JSON.stringify([v]) });

async function getJSON<T>(url: string): Promise<T> {
  const r = await httpText(url);
  assert.equal(r.status, 200, `${url}: ${r.body}`);
  return JSON.parse(r.body) as T;
}

describe('application-grid-wrapper', () => {
  let saKubeconfig: string;
  let wrapper: RunningWrapper;
  let clientKubeconfig: string;
  let admin: k8s.KubeConfig;
  let relay: CuttableRelay;

  before(async () => {
    const c = cluster();
    admin = c.kubeConfig();
    saKubeconfig = await installWrapperRbac(c);
    await c.apply([
      node('na1', { zone: 'a' }),
      node('na2', { zone: 'a' }),
      node('nb1', { zone: 'b' }),
      node('nx', {}),
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } },
      service('web', zone('zone')),
      service('se', { [ANNOTATION_TOPOLOGY_KEYS_SUPEREDGE]: '["zone"]' }),
      service('plain'),
      slice('web-x', 'web', [
        ['10.1.0.1', 'na1'],
        ['10.1.0.2', 'na2'],
        ['10.1.0.3', 'nb1'],
        ['10.1.0.4', undefined],
      ]),
      slice('web-y', 'web', [['10.1.0.5', 'nb1']]),
      slice('se-x', 'se', [
        ['10.3.0.1', 'nb1'],
        ['10.3.0.2', 'na2'],
        ['10.3.0.3', 'ghost'],
      ]),
      slice('plain-x', 'plain', [
        ['10.2.0.1', 'nb1'],
        ['10.2.0.2', 'na1'],
      ]),
      {
        apiVersion: 'v1',
        kind: 'Endpoints',
        metadata: { name: 'web', namespace: ns },
        subsets: [
          {
            addresses: [
              { ip: '10.1.0.1', nodeName: 'na1' },
              { ip: '10.1.0.3', nodeName: 'nb1' },
            ],
            ports: [{ port: 8080, protocol: 'TCP' }],
          },
        ],
      },
    ]);
    // Upstream goes through a relay the outage test can cut.
    relay = new CuttableRelay(Number(new URL(c.server).port));
    const upstreamKubeconfig = await kubeconfigWithServer(saKubeconfig, await relay.start(), c.dir);
    wrapper = await startWrapper(c, { nodeName: LOCAL, kubeconfig: upstreamKubeconfig, args: ['--bookmark-interval=1s'] });
    clientKubeconfig = await c.kubeconfigForURL(wrapper.url, 'wrapper');
  });

  after(async () => {
    await wrapper?.stop();
    relay?.close();
  });

  test('the ServiceAccount of the install manifest may read what the wrapper serves and nothing more', async () => {
    const c = cluster();
    const can = async (...args: string[]) => (await c.kubectl(['auth', 'can-i', ...args], { kubeconfig: saKubeconfig })).stdout.trim();
    assert.equal(await can('watch', 'endpointslices.discovery.k8s.io'), 'yes');
    assert.equal(await can('list', 'servicecidrs.networking.k8s.io'), 'yes');
    assert.equal(await can('create', 'events.events.k8s.io', '-n', 'kube-system'), 'yes');
    for (const denied of [
      ['get', 'secrets', '-A'],
      ['create', 'services', '-n', ns],
      ['update', 'endpointslices.discovery.k8s.io', '-A'],
      ['delete', 'events', '-A'],
      ['list', 'pods', '-A'],
    ]) {
      assert.equal(await can(...denied), 'no', denied.join(' '));
    }
  });

  test("kube-proxy's list (kubectl get --raw) holds only the local NodeUnit's endpoints of marked Services", async () => {
    const r = await cluster().kubectl(['get', '--raw', KUBE_PROXY_SLICES], { kubeconfig: clientKubeconfig });
    assert.equal(r.code, 0, r.stderr);
    const list = JSON.parse(r.stdout) as { kind: string; metadata: { resourceVersion: string }; items: Slice[] };
    assert.equal(list.kind, 'EndpointSliceList');
    assert.match(list.metadata.resourceVersion, /^\d+$/);
    const byName = new Map(list.items.filter((s) => s.metadata.namespace === ns).map((s) => [s.metadata.name, s]));
    assert.deepEqual(ipsOf(byName.get('web-x')!), ['10.1.0.1', '10.1.0.2'], 'zone a only; no nodeName: dropped');
    assert.deepEqual(byName.get('web-y')!.endpoints, [], 'a slice with nothing left is still served, empty');
    assert.deepEqual(ipsOf(byName.get('se-x')!), ['10.3.0.2'], "SuperEdge's annotation honoured; unknown node dropped");
    assert.deepEqual(ipsOf(byName.get('plain-x')!), ['10.2.0.1', '10.2.0.2'], 'unmarked: every endpoint');

    const eps = await getJSON<{ subsets: { addresses: { ip: string }[] }[] }>(`${wrapper.url}/api/v1/namespaces/${ns}/endpoints/web`);
    assert.deepEqual(
      eps.subsets.flatMap((s) => s.addresses.map((a) => a.ip)),
      ['10.1.0.1'],
      'legacy Endpoints filtered alike',
    );

    const svcs = await getJSON<{ items: KubeObject[] }>(
      `${wrapper.url}/api/v1/services?fieldSelector=spec.clusterIP!%3DNone&labelSelector=!service.kubernetes.io/headless`,
    );
    assert.deepEqual(
      svcs.items
        .filter((s) => s.metadata.namespace === ns)
        .map((s) => s.metadata.name)
        .sort(),
      ['plain', 'se', 'web'],
    );
    const nodes = await getJSON<{ items: KubeObject[] }>(`${wrapper.url}/api/v1/nodes?fieldSelector=metadata.name%3D${LOCAL}`);
    assert.deepEqual(
      nodes.items.map((n) => n.metadata.name),
      [LOCAL],
    );
    const self = await getJSON<KubeObject>(`${wrapper.url}/api/v1/nodes/${LOCAL}`);
    assert.equal(self.kind, 'Node');
    const cidrs = await getJSON<{ kind: string; items: KubeObject[] }>(`${wrapper.url}/apis/networking.k8s.io/v1/servicecidrs`);
    assert.equal(cidrs.kind, 'ServiceCIDRList');
    assert.ok(
      cidrs.items.some((c) => (c.spec as { cidrs: string[] }).cidrs.includes('10.96.0.0/16')),
      'the default ServiceCIDR',
    );

    // kube-proxy asks for protobuf first; JSON is a valid answer.
    const proto = await httpText(`${wrapper.url}/api/v1/namespaces/${ns}/services`, {
      headers: { Accept: 'application/vnd.kubernetes.protobuf, */*' },
    });
    assert.equal(proto.status, 200);
    assert.match(String(proto.headers['content-type']), /application\/json/);
    const upstreamCount = JSON.parse(await cluster().rawGet(`/api/v1/namespaces/${ns}/services`)).items.length;
    assert.equal(JSON.parse(proto.body).items.length, upstreamCount);
  });

  test('refuses what it does not serve (403 Status), rejects malformed queries (400), 404 for missing objects', async () => {
    const refused: [string, string][] = [
      ['GET', '/api/v1/secrets'],
      ['GET', '/api/v1/namespaces/kube-system/configmaps'],
      ['POST', `/api/v1/namespaces/${ns}/services`],
      ['DELETE', `/api/v1/nodes/${LOCAL}`],
      ['PUT', `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices/web-x`],
      ['DELETE', `/apis/events.k8s.io/v1/namespaces/${ns}/events/x`],
      ['GET', '/apis/apps/v1/deployments'],
    ];
    for (const [method, path] of refused) {
      const r = await httpText(`${wrapper.url}${path}`, {
        method,
        body: method === 'GET' || method === 'DELETE' ? undefined : '{}',
        headers: { 'Content-Type': 'application/json' },
      });
      assert.equal(r.status, 403, `${method} ${path}`);
      const st = JSON.parse(r.body);
      assert.equal(st.kind, 'Status');
      assert.equal(st.reason, 'Forbidden');
    }
    const bad: [string, RegExp][] = [
      ['labelSelector=app%20in%20db', /labelSelector|expected '\(' after set operator/],
      ['resourceVersion=abc', /"resourceVersion"/],
      ['timeoutSeconds=-1', /"timeoutSeconds": must be a non-negative integer/],
      ['fieldSelector=spec.nodeName%3Dx', /field label not supported: spec.nodeName/],
      ['watch=maybe', /"watch": must be true or false/],
      ['watch=1&sendInitialEvents=true', /sendInitialEvents requires resourceVersionMatch=NotOlderThan/],
      ['limit=ten', /"limit"/],
    ];
    for (const [q, message] of bad) {
      const r = await httpText(`${wrapper.url}/api/v1/services?${q}`);
      assert.equal(r.status, 400, q);
      const st = JSON.parse(r.body);
      assert.equal(st.reason, 'BadRequest');
      assert.match(st.message, message);
    }
    // /version is kube-proxy's too: served from what the wrapper last read upstream (and saved), not forwarded.
    const version = await httpText(`${wrapper.url}/version`);
    assert.equal(version.status, 200);
    assert.match(JSON.parse(version.body).gitVersion, /^v1\.\d+\.\d+/);
    const missing = await httpText(`${wrapper.url}/api/v1/namespaces/${ns}/services/nope`);
    assert.equal(missing.status, 404);
    assert.equal(JSON.parse(missing.body).reason, 'NotFound');
  });

  test("events are forwarded to the apiserver as the wrapper's ServiceAccount, with the caller's credentials stripped", async () => {
    const body = JSON.stringify({
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: 'kube-proxy-started', namespace: 'default' },
      eventTime: new Date().toISOString().replace(/\.\d+Z$/, '.000000Z'),
      reportingController: 'kube-proxy',
      reportingInstance: 'kube-proxy-na1',
      action: 'StartKubeProxy',
      reason: 'Starting',
      type: 'Normal',
      regarding: { kind: 'Node', name: LOCAL },
    });
    const r = await httpText(`${wrapper.url}/apis/events.k8s.io/v1/namespaces/default/events`, {
      method: 'POST',
      body,
      headers: { 'Content-Type': 'application/json', 'Impersonate-User': 'system:admin' },
    });
    assert.equal(r.status, 201, r.body);
    const writes = await cluster().writeRequests(`system:serviceaccount:${WRAPPER_NAMESPACE}:${WRAPPER_SA}`);
    assert.ok(
      writes.some((w) => w.resource === 'events' && w.name === 'kube-proxy-started' && w.code === 201),
      JSON.stringify(writes),
    );
  });

  test('watch: from a list resourceVersion with no gap or duplicate; 410 for unknown versions; bookmarks; timeout; streaming list', async () => {
    const base = `${wrapper.url}/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`;
    const list = await getJSON<{ metadata: { resourceVersion: string }; items: Slice[] }>(base);
    const listRv = list.metadata.resourceVersion;
    // Changes made between the list and the watch must arrive.
    await cluster().apply([slice('late', 'plain', [['10.2.0.9', 'nb1']])]);
    await sleep(500);
    const w = new RawWatch(`${base}?watch=true&resourceVersion=${listRv}&allowWatchBookmarks=true`);
    await w.ready;
    await w.until((ev) => ev.some((e) => e.type === 'ADDED' && e.object.metadata.name === 'late'));
    await cluster().kubectl(['delete', 'endpointslice', 'late', '-n', ns]);
    const evs = await w.until((ev) => ev.some((e) => e.type === 'DELETED' && e.object.metadata.name === 'late'));
    await w.until((ev) => ev.some((e) => e.type === 'BOOKMARK' && Number(e.object.metadata.resourceVersion) >= Number(listRv)), 5000);
    const changes = evs.filter((e) => e.type !== 'BOOKMARK').map((e) => `${e.type}:${e.object.metadata.name}`);
    assert.deepEqual(changes, ['ADDED:late', 'DELETED:late'], 'exactly once each');
    w.close();

    for (const rv of ['1', String(Number(listRv) + 10_000_000)]) {
      const expired = new RawWatch(`${base}?watch=true&resourceVersion=${rv}`);
      await expired.ready;
      const [e] = await expired.until((ev) => ev.length > 0);
      assert.equal(e!.type, 'ERROR');
      assert.equal(e!.object.code, 410);
      assert.equal(e!.object.reason, 'Expired');
    }

    const started = Date.now();
    const timed = new RawWatch(`${base}?watch=true&timeoutSeconds=1&resourceVersion=${listRv}`);
    await timed.ready;
    await timed.until(() => timed.ended, 5000).catch(() => undefined);
    assert.ok(timed.ended, 'ended');
    assert.ok(timed.endedAt - started >= 900 && timed.endedAt - started < 4000, `${timed.endedAt - started} ms`);
    assert.ok(!timed.events.some((e) => e.type === 'ERROR'));

    const stream = new RawWatch(`${base}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true`);
    await stream.ready;
    const initial = await stream.until((ev) => ev.some((e) => e.type === 'BOOKMARK'));
    const end = initial.findIndex((e) => e.type === 'BOOKMARK');
    assert.deepEqual(initial[end]!.object.metadata.annotations, { 'k8s.io/initial-events-end': 'true' });
    const now = await getJSON<{ items: Slice[] }>(base);
    assert.deepEqual(
      initial
        .slice(0, end)
        .map((e) => `${e.type}:${e.object.metadata.name}`)
        .sort(),
      now.items.map((s) => `ADDED:${s.metadata.name}`).sort(),
    );
    stream.close();

    // Selectors on a watch: only matching objects, and objects leaving the selection are DELETED.
    const sel = new RawWatch(`${wrapper.url}/api/v1/namespaces/${ns}/services?watch=1&labelSelector=tier%20in%20(front)`);
    await sel.ready;
    await cluster().apply([{ ...service('sel'), metadata: { ...service('sel').metadata, labels: { tier: 'front' } } }]);
    await sel.until((ev) => ev.some((e) => e.type === 'ADDED' && e.object.metadata.name === 'sel'));
    await cluster().kubectl(['label', 'service', 'sel', '-n', ns, 'tier=back', '--overwrite']);
    await sel.until((ev) => ev.some((e) => e.type === 'DELETED' && e.object.metadata.name === 'sel'));
    assert.ok(sel.events.every((e) => e.object.metadata.name === 'sel'));
    sel.close();
  });

  test('relabelling a node, changing the annotation: watchers get MODIFIED for exactly the affected objects', async () => {
    const slicesUrl = `${wrapper.url}/apis/discovery.k8s.io/v1/endpointslices`;
    const list = await getJSON<{ metadata: { resourceVersion: string } }>(slicesUrl);
    const w = new RawWatch(`${slicesUrl}?watch=true&resourceVersion=${list.metadata.resourceVersion}`);
    const ep = new RawWatch(`${wrapper.url}/api/v1/endpoints?watch=true&resourceVersion=${list.metadata.resourceVersion}`);
    await Promise.all([w.ready, ep.ready]);
    const changed = (events: typeof w.events) =>
      events.filter((e) => e.type !== 'BOOKMARK').map((e) => `${e.type}:${e.object.metadata.name}:${ipsOf(e.object as never).join(',')}`);

    await cluster().kubectl(['label', 'node', 'nb1', 'zone=a', '--overwrite']);
    await w.until((ev) => changed(ev).length >= 3);
    await sleep(500);
    assert.deepEqual(changed(w.events).sort(), [
      'MODIFIED:se-x:10.3.0.1,10.3.0.2',
      'MODIFIED:web-x:10.1.0.1,10.1.0.2,10.1.0.3',
      'MODIFIED:web-y:10.1.0.5',
    ]);
    const epEvents = await ep.until((ev) => ev.length >= 1);
    assert.equal(epEvents[0]!.type, 'MODIFIED');

    w.events.length = 0;
    await cluster().kubectl(['annotate', 'service', 'web', '-n', ns, `${ANNOTATION_TOPOLOGY_KEYS}-`]);
    await w.until((ev) => changed(ev).length >= 1);
    await sleep(500);
    assert.deepEqual(changed(w.events), ['MODIFIED:web-x:10.1.0.1,10.1.0.2,10.1.0.3,10.1.0.4'], 'web-y was already whole');

    w.events.length = 0;
    await cluster().kubectl(['annotate', 'service', 'web', '-n', ns, `${ANNOTATION_TOPOLOGY_KEYS}=["zone"]`]);
    await cluster().kubectl(['label', 'node', 'nb1', 'zone=b', '--overwrite']);
    await w.until((ev) => changed(ev).length >= 4);
    await sleep(500);
    const [annotated, ...relabelled] = changed(w.events);
    assert.equal(annotated, 'MODIFIED:web-x:10.1.0.1,10.1.0.2,10.1.0.3');
    assert.deepEqual(relabelled.sort(), ['MODIFIED:se-x:10.3.0.2', 'MODIFIED:web-x:10.1.0.1,10.1.0.2', 'MODIFIED:web-y:']);
    const metrics = await httpText(`${wrapper.url}/metrics`);
    assert.match(metrics.body, /servicegroup_wrapper_endpoints\{decision="dropped"\} [1-9]/);
    w.close();
    ep.close();
  });

  test('kubectl get -w through the wrapper sees a change', async () => {
    const child = spawn(join(cluster().binDir, 'kubectl'), [
      `--kubeconfig=${clientKubeconfig}`,
      'get',
      'endpointslices',
      '-n',
      ns,
      '-w',
      '-o',
      'name',
    ]);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    try {
      const deadline = Date.now() + 20_000;
      while (!out.includes('web-x') && Date.now() < deadline) await sleep(100);
      assert.match(out, /endpointslice.discovery.k8s.io\/web-x/, err);
      const before = out.length;
      await cluster().apply([slice('watched', 'plain', [['10.2.0.7', 'na1']])]);
      while (!out.slice(before).includes('watched') && Date.now() < deadline) await sleep(100);
      assert.match(out.slice(before), /endpointslice.discovery.k8s.io\/watched/, err);
    } finally {
      child.kill();
    }
  });

  test('no lost events: a client-node informer through the wrapper during 1,000 random operations ends equal to the filtered apiserver state', async () => {
    // client-node refuses a plain-HTTP server unless TLS verification is declared off.
    const viaWrapper = new k8s.KubeConfig();
    viaWrapper.loadFromOptions({
      clusters: [{ name: 'wrapper', server: wrapper.url, skipTLSVerify: true }],
      users: [{ name: 'kube-proxy' }],
      contexts: [{ name: 'wrapper', cluster: 'wrapper', user: 'kube-proxy' }],
      currentContext: 'wrapper',
    });
    const wrapperDiscovery = viaWrapper.makeApiClient(k8s.DiscoveryV1Api);
    const informer = k8s.makeInformer(viaWrapper, '/apis/discovery.k8s.io/v1/endpointslices', () =>
      wrapperDiscovery.listEndpointSliceForAllNamespaces(),
    );
    const informerErrors: unknown[] = [];
    informer.on('error', (e) => informerErrors.push(e));
    await informer.start();
    // A raw watch from a list's resourceVersion, to check order and uniqueness of every event.
    const slicesUrl = `${wrapper.url}/apis/discovery.k8s.io/v1/endpointslices`;
    const start = await getJSON<{ metadata: { resourceVersion: string }; items: Slice[] }>(slicesUrl);
    const raw = new RawWatch(`${slicesUrl}?watch=true&resourceVersion=${start.metadata.resourceVersion}`);
    await raw.ready;

    const core = admin.makeApiClient(k8s.CoreV1Api);
    const disc = admin.makeApiClient(k8s.DiscoveryV1Api);
    const rnd = (n: number) => Math.floor(Math.random() * n);
    const nodes = ['na1', 'na2', 'nb1', 'nx'];
    const zones = ['a', 'b', 'c'];
    const services = Array.from({ length: 8 }, (_, i) => `r${i}`);
    const annotationChoices: Record<string, string>[] = [
      {},
      zone('zone'),
      { [ANNOTATION_TOPOLOGY_KEYS]: '["zone","*"]' },
      { [ANNOTATION_TOPOLOGY_KEYS_SUPEREDGE]: '["zone"]' },
    ];
    const slices = Array.from({ length: 24 }, (_, i) => ({ name: `r-slice-${i}`, svc: services[i % services.length]! }));
    const randomEndpoints = () =>
      Array.from(
        { length: rnd(5) },
        (_, i) => [`10.9.${rnd(250)}.${i + 1}`, rnd(6) === 0 ? undefined : nodes[rnd(nodes.length)]] as [string, string | undefined],
      );
    const ignore = (e: unknown) => {
      const code = (e as { code?: number }).code;
      if (code !== 404 && code !== 409) throw e;
    };
    const op = async () => {
      const r = rnd(100);
      if (r < 15) {
        const name = services[rnd(services.length)]!;
        const body = service(name, annotationChoices[rnd(annotationChoices.length)]);
        await core.createNamespacedService({ namespace: ns, body }).catch(async (e) => {
          if ((e as { code?: number }).code !== 409) throw e;
          await core
            .patchNamespacedService(
              {
                namespace: ns,
                name,
                body: { metadata: { annotations: { [ANNOTATION_TOPOLOGY_KEYS]: JSON.stringify(rnd(2) ? ['zone'] : []) } } },
              },
              k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
            )
            .catch(ignore);
        });
      } else if (r < 20) {
        await core.deleteNamespacedService({ namespace: ns, name: services[rnd(services.length)]! }).catch(ignore);
      } else if (r < 80) {
        const s = slices[rnd(slices.length)]!;
        const body = slice(s.name, s.svc, randomEndpoints());
        if (rnd(4) === 0) await disc.deleteNamespacedEndpointSlice({ namespace: ns, name: s.name }).catch(ignore);
        else
          await disc.createNamespacedEndpointSlice({ namespace: ns, body }).catch(async (e) => {
            if ((e as { code?: number }).code !== 409) throw e;
            await disc
              .patchNamespacedEndpointSlice(
                { namespace: ns, name: s.name, body: { endpoints: body.endpoints } },
                k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
              )
              .catch(ignore);
          });
      } else {
        const name = nodes[rnd(nodes.length)]!;
        await core.patchNode(
          { name, body: { metadata: { labels: { zone: rnd(4) === 0 ? null : zones[rnd(zones.length)] } } } },
          k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
        );
      }
    };
    const started = Date.now();
    let done = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (done < 1000) {
          done++;
          await op();
        }
      }),
    );
    const opsMs = Date.now() - started;

    // The expected state: the pure filter applied to the apiserver's current objects.
    const expected = async () => {
      const [svcs, sls, nds] = await Promise.all([
        core.listNamespacedService({ namespace: ns }),
        disc.listNamespacedEndpointSlice({ namespace: ns }),
        core.listNode(),
      ]);
      const labels = new Map(nds.items.map((n) => [n.metadata!.name!, n.metadata!.labels ?? {}]));
      const ctx = { localLabels: labels.get(LOCAL), nodeLabels: (n: string) => labels.get(n) };
      const out = new Map<string, string>();
      const bySvc = new Map<string, KubeObject[]>();
      for (const s of sls.items) {
        const key = s.metadata!.labels!['kubernetes.io/service-name']!;
        bySvc.set(key, [...(bySvc.get(key) ?? []), s as unknown as KubeObject]);
      }
      for (const [svcName, group] of bySvc) {
        const svc = svcs.items.find((s) => s.metadata!.name === svcName) as unknown as KubeObject | undefined;
        const r = filterEndpointSlices(topologyKeysOf(svc), group, ctx);
        for (const s of r.slices) out.set(s.metadata.name, JSON.stringify(ipsOf(s as Slice)));
      }
      return out;
    };
    const actual = () =>
      new Map(
        informer
          .list(ns)
          .map((s) => [s.metadata!.name!, JSON.stringify((s.endpoints ?? []).map((e) => e.addresses[0]).sort())] as [string, string]),
      );
    let want = new Map<string, string>();
    let got = new Map<string, string>();
    const deadline = Date.now() + 30_000;
    do {
      await sleep(500);
      want = await expected();
      got = actual();
    } while (JSON.stringify([...want].sort()) !== JSON.stringify([...got].sort()) && Date.now() < deadline);
    const errorsBeforeStop = [...informerErrors];
    await informer.stop();
    assert.deepEqual([...got].sort(), [...want].sort(), 'informer cache equals the filtered apiserver state, object by object');

    // Replaying the raw watch gives the same state, with strictly increasing resourceVersions.
    const replay = new Map<string, string>(
      start.items.filter((s) => s.metadata.namespace === ns).map((s) => [s.metadata.name, JSON.stringify(ipsOf(s))]),
    );
    let last = Number(start.metadata.resourceVersion);
    for (const e of raw.events) {
      if (e.type === 'BOOKMARK') continue;
      const rv = Number(e.object.metadata.resourceVersion);
      assert.ok(rv > last, 'resourceVersions strictly increase: no duplicate, no reordering');
      last = rv;
      if (e.object.metadata.namespace !== ns) continue;
      if (e.type === 'DELETED') replay.delete(e.object.metadata.name);
      else replay.set(e.object.metadata.name, JSON.stringify(ipsOf(e.object as never)));
    }
    raw.close();
    assert.deepEqual([...replay].sort(), [...want].sort(), 'list + watch replay equals the filtered apiserver state');
    assert.deepEqual(errorsBeforeStop, []);
    const metrics = (await httpText(`${wrapper.url}/metrics`)).body;
    const num = (re: RegExp) => Number(re.exec(metrics)?.[1] ?? 0);
    const encoded = num(/servicegroup_wrapper_watch_events_encoded_total\{resource="endpointslices"\} (\d+)/);
    const sent = num(/servicegroup_wrapper_watch_events_sent_total\{resource="endpointslices"\} (\d+)/);
    assert.ok(sent > encoded, `two watchers, events encoded once: sent ${sent} > encoded ${encoded}`);
    console.log(`[wrapper] 1000 ops in ${opsMs} ms; ${raw.events.length} watch events; encoded ${encoded}, sent ${sent}`);
  });

  test('upstream outage and apiserver restart: the wrapper relists and watchers receive the differences, deletes included', async () => {
    const c = cluster();
    // The random test relabelled nodes: put the units back.
    await c.apply([node('na1', { zone: 'a' }), node('na2', { zone: 'a' }), node('nb1', { zone: 'b' })]);
    await c.apply([slice('doomed', 'plain', [['10.2.1.1', 'na1']]), slice('kept', 'web', [['10.1.1.1', 'na1']])]);
    const slicesUrl = `${wrapper.url}/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`;
    await RawWatchUntil(slicesUrl, ['doomed', 'kept']);
    const list = await getJSON<{ metadata: { resourceVersion: string } }>(slicesUrl);
    const w = new RawWatch(`${slicesUrl}?watch=true&resourceVersion=${list.metadata.resourceVersion}`);
    await w.ready;

    relay.cut();
    await c.kubectl(['delete', 'endpointslice', 'doomed', '-n', ns]);
    await c.apply([
      slice('kept', 'web', [
        ['10.1.1.1', 'na1'],
        ['10.1.1.2', 'na2'],
        ['10.1.1.3', 'nb1'],
      ]),
    ]);
    await c.restartApiserver();
    relay.restore();

    const evs = await w.until(
      (ev) =>
        ev.some((e) => e.type === 'DELETED' && e.object.metadata.name === 'doomed') &&
        ev.some((e) => e.type === 'MODIFIED' && e.object.metadata.name === 'kept'),
      60_000,
    );
    assert.deepEqual(
      ipsOf(evs.findLast((e) => e.object.metadata.name === 'kept')!.object as never),
      ['10.1.1.1', '10.1.1.2'],
      'filtered after recovery',
    );
    assert.equal(w.ended, false, 'the client watch survived the upstream outage');
    w.close();
    const metrics = (await httpText(`${wrapper.url}/metrics`)).body;
    assert.match(metrics, /servicegroup_wrapper_upstream_relists_total\{resource="endpointslices"\} [1-9]/);
  });

  test('a resourceVersion from before a wrapper restart gets 410 Expired; a not-yet-synced wrapper answers 503', async () => {
    const slicesUrl = `${wrapper.url}/apis/discovery.k8s.io/v1/endpointslices`;
    const oldRv = (await getJSON<{ metadata: { resourceVersion: string } }>(slicesUrl)).metadata.resourceVersion;
    const { port } = wrapper;
    await wrapper.stop();
    relay.cut(); // keep the new wrapper from syncing for a moment
    const restarted = startWrapper(cluster(), {
      nodeName: LOCAL,
      kubeconfig: await kubeconfigWithServer(saKubeconfig, `https://127.0.0.1:${relay.port}`, cluster().dir),
      port,
      args: ['--bookmark-interval=1s'],
    });
    let unready: { status: number; body: string } | undefined;
    for (let i = 0; i < 100 && !unready; i++) {
      await sleep(100);
      unready = await httpText(`${slicesUrl}`).catch(() => undefined);
    }
    assert.equal(unready?.status, 503);
    assert.equal(JSON.parse(unready!.body).reason, 'ServiceUnavailable');
    assert.equal((await httpText(`${wrapper.url}/readyz`)).status, 503);
    relay.restore();
    wrapper = await restarted;
    const w = new RawWatch(`${slicesUrl}?watch=true&resourceVersion=${oldRv}`);
    await w.ready;
    const [e] = await w.until((ev) => ev.length > 0);
    assert.equal(e!.type, 'ERROR');
    assert.equal(e!.object.code, 410);
  });
});

/** Waits until a list through the wrapper shows the named objects. */
async function RawWatchUntil(listUrl: string, names: string[]) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const r = await httpText(listUrl);
    const have = new Set((JSON.parse(r.body).items as KubeObject[]).map((o) => o.metadata.name));
    if (names.every((n) => have.has(n))) return;
    if (Date.now() > deadline) throw new Error(`objects ${names} not served in time`);
    await sleep(200);
  }
}
