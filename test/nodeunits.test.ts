// NodeUnits against the real test cluster, each program with the ServiceAccount and RBAC of its
// install manifest: discovered and declared units, contested nodes, labels the controller did not
// set, zero writes once settled (from the apiserver's audit log); and the wrapper's namespace opt-in.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { NodeUnitController } from '../controllers/nodeunit/controller.ts';
import { NodeMembership } from '../controllers/nodeunit/membership.ts';
import { nodeUnitName } from '../controllers/nodeunit/render.ts';
import { slimNode } from '../controllers/reconcile/cache-views.ts';
import { DEPLOYMENT_GRIDS, NODES, SERVICE_GRIDS, STATEFULSET_GRIDS } from '../controllers/reconcile/resources.ts';
import { KubeClient } from '../kube/client.ts';
import { Informer } from '../kube/informer.ts';
import { loadKubeconfig } from '../kube/kubeconfig.ts';
import type { KubeObject } from '../kube/objects.ts';
import { useCluster } from './cluster/cluster.ts';
import type { KubeProxy } from './cluster/kube-proxy.ts';
import { waitFor } from './cluster/processes.ts';
import {
  CONTROLLER_USER,
  deploymentGrid,
  getIfExists,
  installCrds,
  installRbac,
  LaggingWatch,
  type Obj,
  until,
} from './controllers-helpers.ts';
import { httpText, installWrapperRbac, type RunningWrapper, startWrapper } from './wrapper-harness.ts';

const cluster = useCluster({ kwok: true });
const ns = 'units';
const NU = (name = '') => `/apis/servicegroup.io/v1alpha1/nodeunits${name ? `/${name}` : ''}`;

let admin: KubeClient;
let controllerClient: LaggingWatch;
let controller: NodeUnitController;
let grids: Informer<KubeObject>[] = [];

const getOrUndefined = (path: string) => getIfExists(admin, path);

async function labels(node: string): Promise<Record<string, string>> {
  return (await admin.get<Obj>(`/api/v1/nodes/${node}`)).metadata.labels ?? {};
}

/** Sets (string) or removes (null) node labels as an operator would, with a merge patch. */
async function label(node: string, changes: Record<string, string | null>): Promise<void> {
  await admin.mergePatch(`/api/v1/nodes/${node}`, { metadata: { labels: changes } }, 'operator');
}

function cond(obj: Obj | undefined, type: string) {
  return (obj?.status?.conditions ?? []).find((c: { type: string }) => c.type === type);
}

async function explainUnits(): Promise<string> {
  const r = await cluster().kubectl(['get', 'nodeunits,nodes', '--show-labels', '-o', 'wide']);
  return r.stdout + r.stderr;
}

/** Waits until the NodeUnit exists with exactly these member nodes. */
function unitWithNodes(name: string, nodes: string[]): Promise<Obj> {
  return until(
    `NodeUnit ${name} with nodes ${nodes.join(',')}`,
    async () => {
      const u = await getOrUndefined(NU(name));
      return u?.status?.observedGeneration === u?.metadata.generation && JSON.stringify(u?.status?.nodes) === JSON.stringify(nodes) && u;
    },
    60_000,
    explainUnits,
  );
}

function unitGone(name: string): Promise<true> {
  return until(`NodeUnit ${name} deleted`, async () => (await getOrUndefined(NU(name))) === undefined, 60_000, explainUnits);
}

function nodeUnit(name: string, spec: object) {
  return { apiVersion: 'servicegroup.io/v1alpha1', kind: 'NodeUnit', metadata: { name }, spec };
}

describe('NodeUnit controller', () => {
  before(
    async () => {
      const c = cluster();
      await installCrds(c);
      const saKubeconfig = await installRbac(c);
      admin = new KubeClient(loadKubeconfig(c.adminKubeconfigPath));
      await c.apply([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }]);
      await c.createNode('u-a1', { zone: 'a' });
      await c.createNode('u-a2', { zone: 'a', disk: 'ssd' });
      await c.createNode('u-b', { zone: 'b', disk: 'ssd' });
      await c.createNode('u-x', {});
      const client = (controllerClient = new LaggingWatch(loadKubeconfig(saKubeconfig), 'nodeunits'));
      const log = pino({ level: process.env.LOG_LEVEL ?? 'warn' });
      grids = [DEPLOYMENT_GRIDS, SERVICE_GRIDS, STATEFULSET_GRIDS].map((r) => new Informer<KubeObject>(client, r, log));
      grids.push(new Informer<KubeObject>(client, NODES, log, { keep: slimNode }));
      for (const g of grids) g.start();
      controller = new NodeUnitController({
        client,
        log,
        deploymentGrids: grids[0]!,
        serviceGrids: grids[1]!,
        statefulSetGrids: grids[2]!,
        nodes: grids[3]!,
        membership: NodeMembership.following(grids[3]!),
        resyncPeriodMs: 0,
      });
      await controller.start();
    },
    { timeout: 30 * 60_000 },
  );

  after(async () => {
    await controller?.stop();
    for (const g of grids) g.stop();
  });

  test('no key in use: no NodeUnit', async () => {
    await controller.waitIdle();
    assert.deepEqual((await admin.get<{ items: Obj[] }>(NU())).items, []);
  });

  test('discovered: a grid key makes one NodeUnit per value, with members, readiness and the grid; kubectl shows them', async () => {
    await cluster().apply([deploymentGrid('web', ns, { container: 'web', image: 'nginx' })]);
    const a = await unitWithNodes('zone.a', ['u-a1', 'u-a2']);
    assert.deepEqual(a.spec, { key: 'zone', value: 'a' });
    assert.equal(a.metadata.labels?.['app.kubernetes.io/managed-by'], 'servicegroup-controller');
    assert.deepEqual(a.status.grids, [{ kind: 'DeploymentGrid', namespace: ns, name: 'web' }]);
    const b = await unitWithNodes('zone.b', ['u-b']);
    await until('kwok marks the nodes Ready and the units count them', async () => {
      const u = await admin.get<Obj>(NU('zone.a'));
      return u.status.readyNodes === 2 && u.status.notReadyNodes === 0 && cond(u, 'Ready')?.status === 'True';
    });
    assert.equal(b.status.nodeCount, 1);
    const r = await until('kubectl get nu', async () => {
      const r = await cluster().kubectl(['get', 'nu']);
      return r.code === 0 && /zone\.a/.test(r.stdout) && r;
    });
    const [header, ...rows] = r.stdout.trim().split('\n');
    assert.match(header!, /^NAME\s+KEY\s+VALUE\s+NODES\s+READY\s+AGE$/);
    assert.ok(
      rows.some((row) => /^zone\.a\s+zone\s+a\s+2\s+2\s+/.test(row)),
      r.stdout,
    );
    const all = await cluster().kubectl(['get', 'servicegroup']);
    assert.match(all.stdout, /nodeunit\.servicegroup\.io\/zone\.b/);
  });

  test('discovered: a new label value creates its unit; unlabelling its last node deletes it', async () => {
    await label('u-x', { zone: 'c' });
    await unitWithNodes('zone.c', ['u-x']);
    await label('u-x', { zone: null });
    await unitGone('zone.c');
    await label('u-a2', { zone: 'b' });
    await unitWithNodes('zone.a', ['u-a1']);
    await unitWithNodes('zone.b', ['u-a2', 'u-b']);
    await label('u-a2', { zone: 'a' });
    await unitWithNodes('zone.a', ['u-a1', 'u-a2']);
  });

  test('a node relabelled away and back before the NodeUnit watch shows the first status write: the units end with the last membership', async () => {
    const members = async (name: string) => JSON.stringify((await getOrUndefined(NU(name)))?.status?.nodes);
    const settled = async () => (await members('zone.a')) === '["u-a1","u-a2"]' && (await members('zone.b')) === '["u-b"]';
    await until('memberships before', settled);
    await controller.waitIdle();
    await controllerClient.lagging(1_500, async () => {
      await label('u-a2', { zone: 'b' });
      await until('u-a2 written into zone.b', async () => (await members('zone.b')) === '["u-a2","u-b"]', 5_000, explainUnits);
      // The controller's cache still shows u-a2 in zone.a: the membership it must write now equals
      // that stale copy, not what the NodeUnits hold.
      await label('u-a2', { zone: 'a' });
      // Well past the lag: a membership left stale would stay so (nothing else changes these units).
      await new Promise((r) => setTimeout(r, 3_000));
      assert.equal(await members('zone.a'), '["u-a1","u-a2"]', await explainUnits());
      assert.equal(await members('zone.b'), '["u-b"]', await explainUnits());
    });
  });

  test('a sync in a later second, before the NodeUnit watch shows the first status write, writes no second status (condition times come from what the unit holds)', async () => {
    await cluster().createNode('u-d', {});
    await until('kwok marks u-d Ready', async () => cond(await admin.get<Obj>('/api/v1/nodes/u-d'), 'Ready')?.status === 'True');
    await controller.waitIdle();
    const statusWrites = async () =>
      (await cluster().writeRequests(CONTROLLER_USER)).filter(
        (w) => w.resource === 'nodeunits' && w.name === 'zone.d' && w.subresource === 'status',
      );
    await controllerClient.lagging(3_000, async () => {
      await label('u-d', { zone: 'd' });
      await until(
        'zone.d written with its node',
        async () => JSON.stringify((await getOrUndefined(NU('zone.d')))?.status?.nodes) === '["u-d"]',
      );
      // The status holds this second in its condition times; the cache shows the unit without it
      // for a while yet. A change elsewhere wakes a sync in a later second.
      await new Promise((r) => setTimeout(r, 1_200));
      await label('u-b', { unrelated: 'x' });
      await controller.waitIdle();
      await new Promise((r) => setTimeout(r, 4_000));
    });
    await new Promise((r) => setTimeout(r, 1_000));
    const writes = await statusWrites();
    assert.equal(writes.length, 1, JSON.stringify(writes));
    await label('u-b', { unrelated: null });
    await admin.request('DELETE', '/api/v1/nodes/u-d');
    await unitGone('zone.d');
  });

  test('a StatefulSetGrid key is in use too: its units are discovered and name the grid; deleting it releases them', async () => {
    const path = `/apis/servicegroup.io/v1alpha1/namespaces/${ns}/statefulsetgrids/db`;
    await cluster().apply([
      {
        apiVersion: 'servicegroup.io/v1alpha1',
        kind: 'StatefulSetGrid',
        metadata: { name: 'db', namespace: ns },
        spec: {
          gridUniqKey: 'disk',
          template: {
            replicas: 0,
            serviceName: 'db',
            selector: { matchLabels: { app: 'db' } },
            template: { metadata: { labels: { app: 'db' } }, spec: { containers: [{ name: 'db', image: 'mysql' }] } },
          },
        },
      },
    ]);
    const ssd = await unitWithNodes('disk.ssd', ['u-a2', 'u-b']);
    assert.deepEqual(ssd.status.grids, [{ kind: 'StatefulSetGrid', namespace: ns, name: 'db' }]);
    await admin.delete(path);
    await unitGone('disk.ssd');
  });

  test('Service topology annotations (both spellings) make their keys discovered; prefixed keys and 63-character values get valid names', async () => {
    const key = 'topology.example.io/site';
    const value = `Site_${'x'.repeat(58)}`;
    await label('u-x', { [key]: value, rack: 'r1' });
    const svc = (name: string, annotations: Record<string, string>) => ({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: ns, annotations },
      spec: { selector: { app: name }, ports: [{ port: 80 }] },
    });
    await cluster().apply([
      svc('ours', { 'servicegroup.io/topology-keys': JSON.stringify([key, '*']) }),
      svc('superedge', { topologyKeys: '["rack"]' }),
    ]);
    const name = nodeUnitName(key, value);
    assert.match(name, /^topology-example-io-site-[0-9a-f]{8}\.site-x+-[0-9a-f]{8}$/);
    const u = await unitWithNodes(name, ['u-x']);
    assert.deepEqual(u.spec, { key, value });
    await unitWithNodes('rack.r1', ['u-x']);
    await admin.request('DELETE', `/api/v1/namespaces/${ns}/services/ours`);
    await unitGone(name);
    await admin.request('DELETE', `/api/v1/namespaces/${ns}/services/superedge`);
    await unitGone('rack.r1');
    await label('u-x', { [key]: null, rack: null });
  });

  test('a Namespace topology annotation makes its keys discovered', async () => {
    await label('u-x', { floor: 'f1' });
    await admin.mergePatch(`/api/v1/namespaces/${ns}`, { metadata: { annotations: { 'servicegroup.io/topology-keys': '["floor"]' } } });
    await unitWithNodes('floor.f1', ['u-x']);
    await admin.mergePatch(`/api/v1/namespaces/${ns}`, { metadata: { annotations: { 'servicegroup.io/topology-keys': null } } });
    await unitGone('floor.f1');
    await label('u-x', { floor: null });
  });

  test('declared: members by name and by selector are labelled; a member that leaves loses the label; deleting the unit releases the rest', async () => {
    await cluster().apply([
      nodeUnit('east', { key: 'site', value: 'east', nodes: ['u-a1', 'no-such-node'], nodeSelector: { matchLabels: { disk: 'ssd' } } }),
    ]);
    const u = await unitWithNodes('east', ['u-a1', 'u-a2', 'u-b']);
    assert.equal(cond(u, 'Conflict')?.status, 'False');
    for (const n of ['u-a1', 'u-a2', 'u-b']) assert.equal((await labels(n)).site, 'east', n);
    // u-b leaves by losing the selected label; u-x never was a member.
    await label('u-b', { disk: null });
    await unitWithNodes('east', ['u-a1', 'u-a2']);
    await until('u-b unlabelled', async () => !('site' in (await labels('u-b'))));
    assert.equal((await labels('u-x')).site, undefined);
    await admin.request('DELETE', NU('east'));
    await until(
      'members released',
      async () => !('site' in (await labels('u-a1'))) && !('site' in (await labels('u-a2'))),
      60_000,
      explainUnits,
    );
    await label('u-b', { disk: 'ssd' });
  });

  test('labels the controller did not set are left alone: a conflicting value is a Conflict, an equal value survives the unit', async () => {
    await label('u-a1', { site: 'west' });
    await label('u-a2', { site: 'north' });
    await cluster().apply([nodeUnit('north', { key: 'site', value: 'north', nodes: ['u-a1', 'u-a2'] })]);
    const u = await until(
      'Conflict on north',
      async () => {
        const u = await getOrUndefined(NU('north'));
        return cond(u, 'Conflict')?.status === 'True' && u;
      },
      60_000,
      explainUnits,
    );
    assert.match(cond(u, 'Conflict').message, /node u-a1/);
    assert.deepEqual(u.status.nodes, ['u-a2']);
    assert.equal((await labels('u-a1')).site, 'west');
    // The operator gives way: the unit labels the node and the conflict clears.
    await label('u-a1', { site: null });
    await until('north owns u-a1', async () => {
      const u = await getOrUndefined(NU('north'));
      return cond(u, 'Conflict')?.status === 'False' && JSON.stringify(u?.status.nodes) === '["u-a1","u-a2"]';
    });
    await admin.request('DELETE', NU('north'));
    await until('u-a1 released', async () => !('site' in (await labels('u-a1'))));
    // u-a2's site=north was set by the operator before the unit claimed it: it stays.
    assert.equal((await labels('u-a2')).site, 'north');
    await label('u-a2', { site: null });
  });

  test('two declared units claiming one node with different values: Conflict on both, the first claim keeps it, and nothing flaps (zero writes on resync)', async () => {
    await cluster().apply([nodeUnit('red', { key: 'color', value: 'red', nodes: ['u-x'] })]);
    await until('u-x red', async () => (await labels('u-x')).color === 'red');
    await cluster().apply([nodeUnit('blue', { key: 'color', value: 'blue', nodes: ['u-x', 'u-b'] })]);
    for (const [name, pattern] of [
      ['red', /node u-x is also claimed by blue \(color=blue\); this unit claimed it first and keeps it/],
      ['blue', /node u-x is kept by red \(color=red\), which claimed it first; not labelled color=blue/],
    ] as const) {
      const u = await until(`Conflict on ${name}`, async () => {
        const u = await getOrUndefined(NU(name));
        return cond(u, 'Conflict')?.status === 'True' && u;
      });
      assert.match(cond(u, 'Conflict').message, pattern);
    }
    await unitWithNodes('blue', ['u-b']);
    await unitWithNodes('red', ['u-x']);
    assert.equal((await labels('u-x')).color, 'red');

    // Settled: further syncs write nothing, also while an operator's label keeps refusing the
    // unit's (the refused write is not retried until the node's labels or their owners change).
    await label('u-a1', { color: 'green' });
    await cluster().apply([nodeUnit('blue', { key: 'color', value: 'blue', nodes: ['u-x', 'u-b', 'u-a1'] })]);
    await until('blue reports u-a1', async () => /node u-a1/.test(cond(await getOrUndefined(NU('blue')), 'Conflict')?.message ?? ''));
    await controller.waitIdle();
    const writes = async () =>
      (await cluster().writeRequests(CONTROLLER_USER)).filter((w) => w.resource === 'nodes' || w.resource === 'nodeunits');
    const before = (await writes()).length;
    for (let i = 0; i < 5; i++) {
      controller.resync();
      await controller.waitIdle();
    }
    const after = await writes();
    assert.equal(after.length, before, `writes after settling: ${JSON.stringify(after.slice(before))}`);
    assert.equal((await labels('u-x')).color, 'red');
    assert.equal((await labels('u-a1')).color, 'green');
    assert.deepEqual(
      after.filter((w) => w.code === 403),
      [],
      'the install RBAC allows every write the controller makes',
    );
    for (const n of ['red', 'blue']) await admin.request('DELETE', NU(n));
    await until('colors released', async () => !('color' in (await labels('u-x'))) && !('color' in (await labels('u-b'))));
    await label('u-a1', { color: null });
  });

  test('a key with many values: each discovered NodeUnit is created once and its status written once (a sync does not repeat writes its cache does not show yet)', async () => {
    const values = Array.from({ length: 80 }, (_, i) => `r${i}`);
    await Promise.all(values.map((v) => cluster().createNode(`rack-${v}`, { rack: v })));
    await until('kwok marks the rack nodes Ready', async () => {
      const nodes = (await admin.get<{ items: Obj[] }>('/api/v1/nodes?labelSelector=rack')).items;
      return nodes.length === values.length && nodes.every((n) => cond(n, 'Ready')?.status === 'True');
    });
    await controller.waitIdle();
    const nodeUnitWrites = async () => (await cluster().writeRequests(CONTROLLER_USER)).filter((w) => w.resource === 'nodeunits');
    const before = (await nodeUnitWrites()).length;
    await cluster().apply([deploymentGrid('racks', ns, { key: 'rack', container: 'web', image: 'nginx' })]);
    await until(
      'every rack NodeUnit with its node Ready and the grid',
      async () => {
        const units = (await admin.get<{ items: Obj[] }>(NU())).items.filter((u) => u.spec.key === 'rack');
        return units.length === values.length && units.every((u) => u.status?.readyNodes === 1 && u.status?.grids?.length === 1);
      },
      120_000,
      explainUnits,
    );
    await controller.waitIdle();
    const written = (await nodeUnitWrites()).slice(before);
    const count = (verb: string, subresource?: string) => written.filter((w) => w.verb === verb && w.subresource === subresource).length;
    assert.equal(
      count('create'),
      values.length,
      `creates: ${JSON.stringify(written.filter((w) => w.verb === 'create' && w.code !== 201))}`,
    );
    assert.equal(count('patch', 'status'), values.length, 'one status write per NodeUnit');
    assert.equal(
      written.length,
      2 * values.length,
      JSON.stringify(written.filter((w) => w.verb !== 'create' && w.subresource !== 'status')),
    );
    await admin.request('DELETE', `/apis/servicegroup.io/v1alpha1/namespaces/${ns}/deploymentgrids/racks`);
    await Promise.all(values.map((v) => admin.request('DELETE', `/api/v1/nodes/rack-${v}`)));
    await until('rack NodeUnits released', async () => (await admin.get<{ items: Obj[] }>(NU())).items.every((u) => u.spec.key !== 'rack'));
  });

  describe('namespace opt-in (wrapper)', () => {
    let wrapper: RunningWrapper | undefined;
    const optin = 'optin';
    const slices = async () => {
      const r = await httpText(`${wrapper!.url}/apis/discovery.k8s.io/v1/namespaces/${optin}/endpointslices`);
      assert.equal(r.status, 200, r.body);
      const items = JSON.parse(r.body).items as { metadata: { name: string }; endpoints: { addresses: string[] }[] }[];
      return Object.fromEntries(items.map((i) => [i.metadata.name, i.endpoints.map((e) => e.addresses[0]).join(',')]));
    };
    const service = (name: string, annotations: Record<string, string> = {}) => ({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: optin, annotations },
      spec: { ports: [{ port: 80 }] },
    });
    const slice = (service: string) => ({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: service, namespace: optin, labels: { 'kubernetes.io/service-name': service } },
      addressType: 'IPv4',
      ports: [{ port: 80, protocol: 'TCP' }],
      endpoints: [
        { addresses: ['10.9.0.1'], nodeName: 'u-a1', conditions: { ready: true } },
        { addresses: ['10.9.0.2'], nodeName: 'u-b', conditions: { ready: true } },
      ],
    });

    after(async () => {
      await wrapper?.stop();
    });

    test('a Namespace annotated with topology keys makes its Services unit-local unless a Service says otherwise', async () => {
      const c = cluster();
      const kubeconfig = await installWrapperRbac(c);
      await c.apply([
        { apiVersion: 'v1', kind: 'Namespace', metadata: { name: optin, annotations: { 'servicegroup.io/topology-keys': '["zone"]' } } },
      ]);
      await c.apply([service('api'), service('whole', { 'servicegroup.io/topology-keys': '[]' }), slice('api'), slice('whole')]);
      wrapper = await startWrapper(c, { nodeName: 'u-a1', kubeconfig });
      await until('api unit-local, whole not', async () => {
        const s = await slices();
        return s.api === '10.9.0.1' && s.whole === '10.9.0.1,10.9.0.2';
      });
      // The Namespace opts out again: every Service in it is served whole.
      await admin.mergePatch(`/api/v1/namespaces/${optin}`, { metadata: { annotations: { 'servicegroup.io/topology-keys': null } } });
      await until('api served whole', async () => (await slices()).api === '10.9.0.1,10.9.0.2');

      // The apiserver's own Service keeps its endpoints (on no node) when `default` opts in. This
      // apiserver, on loopback, publishes none itself: the slice is made here as it would be.
      const apiserverSlice = {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: 'kubernetes', namespace: 'default', labels: { 'kubernetes.io/service-name': 'kubernetes' } },
        addressType: 'IPv4',
        ports: [{ name: 'https', port: 6443, protocol: 'TCP' }],
        endpoints: [{ addresses: ['10.9.9.9'], conditions: { ready: true } }],
      };
      const apiserverEndpoints = async () => {
        const r = await httpText(`${wrapper!.url}/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes`);
        assert.equal(r.status, 200, r.body);
        return (JSON.parse(r.body).endpoints ?? []).length as number;
      };
      const annotateDefault = (value: string | null) =>
        admin.mergePatch('/api/v1/namespaces/default', { metadata: { annotations: { 'servicegroup.io/topology-keys': value } } });
      await c.apply([
        apiserverSlice,
        ...[service('probe'), slice('probe')].map((o) => ({ ...o, metadata: { ...o.metadata, namespace: 'default' } })),
      ]);
      const probe = async () => {
        const r = await httpText(`${wrapper!.url}/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/probe`);
        return r.status === 200 ? (JSON.parse(r.body).endpoints ?? []).length : -1;
      };
      await annotateDefault('["zone"]');
      try {
        // Another Service of `default` shows the annotation has reached the wrapper.
        await until('default opted in', async () => (await probe()) === 1);
        assert.equal(await apiserverEndpoints(), 1, 'default/kubernetes keeps the apiservers');
      } finally {
        await annotateDefault(null);
        await admin.request('DELETE', '/api/v1/namespaces/default/services/probe');
        await admin.request('DELETE', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/probe');
        await admin.request('DELETE', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes');
      }
    });
  });

  describe('a declared NodeUnit change followed by the wrapper (--membership=nodeunits) and a real kube-proxy', () => {
    let wrapper: RunningWrapper | undefined;
    let proxy: KubeProxy | undefined;
    const kp = 'unitproxy';

    after(async () => {
      await proxy?.stop();
      await wrapper?.stop();
    });

    const rulesUntil = (want: string[]) =>
      waitFor(
        `kube-proxy on u-a1 routes ${kp}/site-svc to ${want}`,
        async () => {
          const rules = await proxy!.rules();
          const re = new RegExp(`-A KUBE-SEP-\\S+ -s (\\d+\\.\\d+\\.\\d+\\.\\d+)/32 -m comment --comment "?${kp}/site-svc"? `, 'g');
          const got = [...new Set([...rules.matchAll(re)].map((m) => m[1]!))].sort();
          return JSON.stringify(got) === JSON.stringify(want) ? got : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      );

    test('kube-proxy routes to exactly the unit members the NodeUnit declares, and follows its changes', async () => {
      const c = cluster();
      const kubeconfig = await installWrapperRbac(c);
      await c.apply([
        { apiVersion: 'v1', kind: 'Namespace', metadata: { name: kp } },
        {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name: 'site-svc', namespace: kp, annotations: { 'servicegroup.io/topology-keys': '["site"]' } },
          spec: { ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }] },
        },
        {
          apiVersion: 'discovery.k8s.io/v1',
          kind: 'EndpointSlice',
          metadata: { name: 'site-svc-1', namespace: kp, labels: { 'kubernetes.io/service-name': 'site-svc' } },
          addressType: 'IPv4',
          ports: [{ name: '', port: 8080, protocol: 'TCP' }],
          endpoints: [
            { addresses: ['10.7.0.1'], nodeName: 'u-a1', conditions: { ready: true, serving: true, terminating: false } },
            { addresses: ['10.7.0.2'], nodeName: 'u-b', conditions: { ready: true, serving: true, terminating: false } },
          ],
        },
        nodeUnit('site-one', { key: 'site', value: 'one', nodes: ['u-a1'] }),
      ]);
      await unitWithNodes('site-one', ['u-a1']);
      wrapper = await startWrapper(c, { nodeName: 'u-a1', kubeconfig, args: ['--membership=nodeunits'] });
      proxy = await c.startKubeProxy({ nodeName: 'u-a1', target: wrapper.url });
      await rulesUntil(['10.7.0.1']);

      const started = Date.now();
      await c.apply([nodeUnit('site-one', { key: 'site', value: 'one', nodes: ['u-a1', 'u-b'] })]);
      await rulesUntil(['10.7.0.1', '10.7.0.2']);
      console.log(`[nodeunits] declared member added → kube-proxy rules in ${Date.now() - started} ms`);
      assert.equal((await labels('u-b')).site, 'one');

      await c.apply([nodeUnit('site-one', { key: 'site', value: 'one', nodes: ['u-a1'] })]);
      await rulesUntil(['10.7.0.1']);

      // The wrapper watched only its own Node upstream, and still served it to kube-proxy.
      const nodes = JSON.parse((await httpText(`${wrapper.url}/api/v1/nodes`)).body) as { items: Obj[] };
      assert.deepEqual(
        nodes.items.map((n) => n.metadata.name),
        ['u-a1'],
      );
      const metrics = (await httpText(`${wrapper.url}/metrics`)).body;
      assert.match(metrics, /servicegroup_wrapper_membership_stale_since_timestamp_seconds 0\n/);
      assert.match(metrics, /servicegroup_wrapper_membership_updated_timestamp_seconds \d/);
      assert.doesNotMatch(metrics, /servicegroup_wrapper_requests_refused_total/);
      await admin.request('DELETE', NU('site-one'));
      await until('u-a1 released', async () => !('site' in (await labels('u-a1'))));
    });
  });
});
