import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Informer } from '../../kube/informer.ts';
import type { KubeObject } from '../../kube/objects.ts';
import type { DeploymentGrid, StatefulSetGrid } from '../api/v1alpha1.ts';
import { renderDeploymentGrid } from '../render/deployment.ts';
import { renderStatefulSetGrid } from '../render/statefulset.ts';
import { deploymentView, endpointSliceView, podView, serviceView, slimNode, statefulSetView } from './cache-views.ts';
import { deploymentGridParts } from './deploymentgrid.ts';
import { DriftDetector } from './drift.ts';
import { findMisplacedPods } from './eviction.ts';
import type { RenderedObject } from './grid-sync.ts';
import { type GridObject, isControlledBy } from './resources.ts';
import { serviceGridParts } from './servicegrid.ts';
import { statefulSetGridParts } from './statefulsetgrid.ts';

const pod = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name: 'web-a-7d4b9c-x1',
    namespace: 'ns',
    uid: 'u1',
    resourceVersion: '42',
    generateName: 'web-a-7d4b9c-',
    labels: { 'servicegroup.io/grid': 'web', 'servicegroup.io/unit': 'a', 'pod-template-hash': '7d4b9c' },
    annotations: { big: 'x'.repeat(1000) },
    ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-a-7d4b9c', uid: 'rs', controller: true }],
    deletionTimestamp: '2026-01-01T00:00:00Z',
    managedFields: [{ manager: 'kube-controller-manager' }],
  },
  spec: { nodeName: 'n2', containers: [{ name: 'web', image: 'example/web:1' }], tolerations: [] },
  status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }], containerStatuses: [{ name: 'web' }] },
};

test('a cached Pod keeps identity, labels, owner, deletion and node; not containers, status, annotations or managedFields', () => {
  assert.deepEqual(podView(pod), {
    metadata: {
      name: 'web-a-7d4b9c-x1',
      namespace: 'ns',
      uid: 'u1',
      resourceVersion: '42',
      labels: pod.metadata.labels,
      ownerReferences: pod.metadata.ownerReferences,
      deletionTimestamp: '2026-01-01T00:00:00Z',
    },
    spec: { nodeName: 'n2' },
  });
  const { deletionTimestamp: _, ...running } = pod.metadata;
  assert.equal('deletionTimestamp' in podView({ ...pod, metadata: running }).metadata, false);
  assert.deepEqual(podView({ ...pod, spec: { containers: [] } }).spec, {});
});

test('misplaced pods are found from the cached view as from the full Pod', () => {
  const deployments = new Map([['a', 'web-a']]);
  const nodes: Record<string, Record<string, string>> = { n2: { zone: 'b' } };
  const strip = (m: { pod: unknown }[]) => m.map(({ pod: _, ...rest }) => rest);
  const full = findMisplacedPods([pod], deployments, 'zone', (n) => nodes[n]);
  assert.equal(full.length, 1);
  assert.deepEqual(strip(findMisplacedPods([podView(pod)], deployments, 'zone', (n) => nodes[n])), strip(full));
});

test('a cached Node keeps identity, labels, annotations, deletion and its Ready condition; not images, addresses or other conditions', () => {
  const ready = { type: 'Ready', status: 'True', reason: 'KubeletReady' };
  const node = {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: 'n1',
      uid: 'u1',
      resourceVersion: '7',
      labels: { zone: 'a' },
      annotations: { 'servicegroup.io/owned-labels': '["zone"]' },
      managedFields: [{ manager: 'kubelet' }],
      creationTimestamp: '2026-01-01T00:00:00Z',
    },
    spec: { podCIDR: '10.0.0.0/24' },
    status: {
      conditions: [{ type: 'MemoryPressure', status: 'False' }, ready],
      images: [{ names: ['example/web:1'], sizeBytes: 1 }],
      addresses: [{ type: 'InternalIP', address: '10.0.0.1' }],
    },
  };
  assert.deepEqual(slimNode(node), {
    metadata: { name: 'n1', uid: 'u1', resourceVersion: '7', labels: { zone: 'a' }, annotations: node.metadata.annotations },
    status: { conditions: [ready] },
  });
  assert.deepEqual(slimNode({ metadata: { name: 'n2', deletionTimestamp: 'now' } }).status, { conditions: [] });
  assert.equal(slimNode({ metadata: { name: 'n2', deletionTimestamp: 'now' } }).metadata.deletionTimestamp, 'now');
});

// A cache for the kind parts' readers: what they ask of an informer (no list/watch behind it).
/** A cache holding `objects`: a handler is told of each as added, as a cache's handlers are. */
const cacheOf = (objects: KubeObject[]) =>
  ({
    on: (handler: (type: 'add', obj: KubeObject) => void) => {
      for (const o of objects) handler('add', o);
    },
    list: () => objects,
    get: (_ns: string | undefined, name: string) => objects.find((o) => o.metadata.name === name),
  }) as unknown as Informer<KubeObject>;

const dgrid = {
  apiVersion: 'servicegroup.io/v1alpha1',
  kind: 'DeploymentGrid',
  metadata: { name: 'web', namespace: 'ns', uid: 'grid-uid', generation: 3 },
  spec: {
    gridUniqKey: 'zone',
    template: {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: { containers: [{ name: 'web', image: 'example/web:1', env: [{ name: 'A', value: '1' }] }] },
      },
    },
  },
} as DeploymentGrid & GridObject;

/** A unit's Deployment as the apiserver returns it: defaults, bookkeeping, a controller's status. */
function liveDeployment(desired: KubeObject): KubeObject {
  const spec = structuredClone(desired.spec);
  spec.strategy = { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } };
  spec.revisionHistoryLimit = 10;
  spec.progressDeadlineSeconds = 600;
  Object.assign(spec.template.spec, { restartPolicy: 'Always', dnsPolicy: 'ClusterFirst', schedulerName: 'default-scheduler' });
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      ...structuredClone(desired.metadata),
      uid: 'dep-uid',
      resourceVersion: '812',
      generation: 2,
      creationTimestamp: '2026-01-01T00:00:00Z',
      annotations: { ...desired.metadata.annotations, 'deployment.kubernetes.io/revision': '2' },
      labels: { ...desired.metadata.labels, team: 'a' },
      managedFields: [{ manager: 'servicegroup-controller', operation: 'Apply', fieldsV1: { 'f:spec': {} } }],
    },
    spec,
    status: {
      observedGeneration: 2,
      replicas: 2,
      updatedReplicas: 2,
      readyReplicas: 1,
      availableReplicas: 1,
      unavailableReplicas: 1,
      conditions: [
        {
          type: 'Available',
          status: 'False',
          reason: 'MinimumReplicasUnavailable',
          message: 'm',
          lastUpdateTime: 't',
          lastTransitionTime: 't',
        },
        {
          type: 'Progressing',
          status: 'True',
          reason: 'NewReplicaSetAvailable',
          message: 'p',
          lastUpdateTime: 't',
          lastTransitionTime: 't',
        },
      ],
    },
  };
}

test('a cached Deployment keeps its whole spec, the metadata the syncs read, status counts and the Progressing condition', () => {
  const [r] = renderDeploymentGrid(dgrid, ['a']);
  const live = liveDeployment(r!.object as KubeObject);
  const view = deploymentView(live);
  assert.equal(view.spec, live.spec);
  assert.deepEqual(view.metadata, {
    name: live.metadata.name,
    namespace: 'ns',
    uid: 'dep-uid',
    resourceVersion: '812',
    generation: 2,
    labels: live.metadata.labels,
    annotations: live.metadata.annotations,
    ownerReferences: live.metadata.ownerReferences,
  });
  assert.deepEqual(view.status, {
    observedGeneration: 2,
    replicas: 2,
    updatedReplicas: 2,
    readyReplicas: 1,
    availableReplicas: 1,
    conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable', message: 'p' }],
  });
  assert.ok(isControlledBy(view, dgrid));
  assert.deepEqual(deploymentView({ metadata: { name: 'new' }, spec: {} }).status, {}, 'no status yet');
});

test('a unit reads the same status, readiness and rollout state from the cached Deployment as from the whole one', () => {
  const parts = deploymentGridParts({ deployments: cacheOf([]), pods: cacheOf([]), nodes: cacheOf([]) }, undefined);
  const [r] = renderDeploymentGrid(dgrid, ['a']);
  const rendered: RenderedObject = { unit: 'a', name: r!.name, template: r!.template, desired: r!.object as KubeObject };
  const live = liveDeployment(r!.object as KubeObject);
  const stuck = structuredClone(live);
  stuck.status.conditions[1] = { type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'stuck' };
  const done = structuredClone(live);
  done.status.readyReplicas = done.status.availableReplicas = 2;
  for (const d of [live, stuck, done]) {
    const read = (o: KubeObject) => parts.unitReader({} as never)(rendered, o);
    assert.deepEqual(read(deploymentView(d)), read(d));
    const gate = (o: KubeObject) =>
      parts.gate!({ ...dgrid, spec: { ...dgrid.spec, rollout: { maxUnavailableUnits: 1 } } }, [rendered], () => o);
    assert.deepEqual(gate(deploymentView(d)), gate(d));
  }
});

type Metadata = {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  ownerReferences: { blockOwnerDeletion?: boolean }[];
};
const meta = (o: KubeObject) => o.metadata as unknown as Metadata;

/** Foreign changes to each kind of field the grid sets: drift must see them through the cached view. */
const foreignChanges: [string, (o: KubeObject) => void][] = [
  ['a container image', (o) => (o.spec.template.spec.containers[0].image = 'example/other:1')],
  ['an env value', (o) => (o.spec.template.spec.containers[0].env[0].value = '2')],
  ['the replica count', (o) => (o.spec.replicas = 5)],
  ['the unit node selector', (o) => (o.spec.template.spec.nodeSelector.zone = 'b')],
  ['a pod label', (o) => (o.spec.template.metadata.labels.app = 'other')],
  ['a label of ours', (o) => (meta(o).labels['servicegroup.io/unit'] = 'b')],
  ['a label of ours removed', (o) => delete meta(o).labels['app.kubernetes.io/managed-by']],
  ['the render hash annotation removed', (o) => delete meta(o).annotations['servicegroup.io/render-hash']],
  ['the owner reference', (o) => (meta(o).ownerReferences[0]!.blockOwnerDeletion = false)],
];

test('drift detection sees every foreign change to a field we set through the cached Deployment, and none without one', () => {
  const [r] = renderDeploymentGrid(dgrid, ['a']);
  const desired = r!.object as KubeObject;
  const live = liveDeployment(desired);
  const drift = new DriftDetector();
  drift.recordApplied(desired, live);
  assert.equal(drift.drifted(desired, deploymentView(live)), false, 'the applied object itself is not drift');
  const statusOnly = structuredClone(live);
  statusOnly.metadata.resourceVersion = '813';
  statusOnly.status.readyReplicas = 2;
  assert.equal(drift.drifted(desired, deploymentView(statusOnly)), false, 'a status change is not drift');
  for (const [what, change] of foreignChanges) {
    const changed = structuredClone(live);
    changed.metadata.resourceVersion = '900';
    change(changed);
    assert.equal(drift.drifted(desired, changed), true, `${what}: drift in the whole object`);
    assert.equal(drift.drifted(desired, deploymentView(changed)), true, `${what}: drift in the cached view`);
  }
});

test('a cached StatefulSet keeps its whole spec and the status of unit readiness; drift and readings match the whole object', () => {
  const grid = { ...dgrid, kind: 'StatefulSetGrid', spec: { ...dgrid.spec, template: { ...dgrid.spec.template, serviceName: 'web' } } };
  const [r] = renderStatefulSetGrid(grid as unknown as StatefulSetGrid, ['a']);
  const desired = r!.object as KubeObject;
  const live: KubeObject = {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { ...structuredClone(desired.metadata), uid: 'sts-uid', resourceVersion: '5', generation: 1, creationTimestamp: 't' },
    spec: { ...structuredClone(desired.spec), podManagementPolicy: 'OrderedReady', updateStrategy: { type: 'RollingUpdate' } },
    status: {
      observedGeneration: 1,
      replicas: 2,
      readyReplicas: 2,
      updatedReplicas: 2,
      availableReplicas: 2,
      currentReplicas: 2,
      currentRevision: 'web-a-1',
      updateRevision: 'web-a-2',
      collisionCount: 0,
    },
  };
  const view = statefulSetView(live);
  assert.equal(view.spec, live.spec);
  assert.deepEqual(view.status, {
    observedGeneration: 1,
    replicas: 2,
    updatedReplicas: 2,
    readyReplicas: 2,
    currentRevision: 'web-a-1',
    updateRevision: 'web-a-2',
  });
  const parts = statefulSetGridParts({ statefulSets: cacheOf([]) });
  const rendered: RenderedObject = { unit: 'a', name: r!.name, template: r!.template, desired };
  const read = (o: KubeObject) => parts.unitReader({} as never)(rendered, o);
  assert.deepEqual(read(view), read(live));
  assert.equal(read(view).ready, false, 'revisions differ: not rolled out');
  const drift = new DriftDetector();
  drift.recordApplied(desired, live);
  assert.equal(drift.drifted(desired, view), false);
  const changed = structuredClone(live);
  changed.metadata.resourceVersion = '6';
  changed.spec.template.spec.containers[0].image = 'example/other:1';
  assert.equal(drift.drifted(desired, statefulSetView(changed)), true);
});

test('a cached Service keeps its whole spec and the metadata the syncs read; not its status', () => {
  const live: KubeObject = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: 'web-a',
      namespace: 'ns',
      uid: 'svc-uid',
      resourceVersion: '9',
      creationTimestamp: 't',
      labels: { 'servicegroup.io/grid': 'web' },
      annotations: { 'servicegroup.io/render-hash': 'h' },
      ownerReferences: [{ apiVersion: 'servicegroup.io/v1alpha1', kind: 'ServiceGrid', name: 'web', uid: 'grid-uid', controller: true }],
      managedFields: [{ manager: 'x' }],
    },
    spec: { clusterIP: 'None', clusterIPs: ['None'], ports: [{ port: 80, protocol: 'TCP' }], selector: { app: 'web' }, type: 'ClusterIP' },
    status: { loadBalancer: {} },
  };
  const { managedFields: _m, creationTimestamp: _c, ...metadata } = live.metadata;
  assert.deepEqual(serviceView(live), { metadata, spec: live.spec });
  assert.equal(serviceView(live).spec, live.spec);
});

test('ServiceGrid readiness counts the same ready endpoints from cached EndpointSlices as from whole ones', () => {
  const slice = (name: string, service: string, endpoints: { node?: string; ready?: boolean }[]): KubeObject => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name,
      namespace: 'ns',
      uid: name,
      resourceVersion: '1',
      labels: { 'kubernetes.io/service-name': service, 'servicegroup.io/grid': 'web' },
    },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: endpoints.map((e, i) => ({
      addresses: [`10.0.0.${i + 1}`],
      conditions: e.ready === undefined ? {} : { ready: e.ready, serving: e.ready, terminating: false },
      nodeName: e.node,
      targetRef: { kind: 'Pod', name: `p${i}`, namespace: 'ns', uid: `pod-${i}` },
      zone: 'z',
    })),
  });
  const slices = [
    slice('web-x1', 'web', [{ node: 'n1', ready: true }, { node: 'n2', ready: false }, { node: 'n2' }, { node: 'n3', ready: true }]),
    slice('web-b-x1', 'web-b', [
      { node: 'n2', ready: true },
      { node: 'n2', ready: false },
    ]),
  ];
  const nodes = [
    { metadata: { name: 'n1', labels: { zone: 'a' } } },
    { metadata: { name: 'n2', labels: { zone: 'b' } } },
    { metadata: { name: 'n3', labels: { zone: 'a' } } },
  ];
  const rendered: RenderedObject[] = [
    { unit: '', name: 'web', template: '' },
    { unit: 'a', name: '', template: 'default' },
    { unit: 'b', name: 'web-b', template: 'default', desired: { metadata: { name: 'web-b' } } },
  ];
  const grid = { metadata: { name: 'web', namespace: 'ns' }, spec: { gridUniqKey: 'zone' } } as never;
  const readings = (cached: KubeObject[]) => {
    const parts = serviceGridParts({ services: cacheOf([]), endpointSlices: cacheOf(cached), nodes: cacheOf(nodes) });
    const read = parts.unitReader({ grid, rendered } as never);
    return rendered.slice(1).map((r) => read(r, undefined));
  };
  const fromViews = readings(slices.map(endpointSliceView));
  assert.deepEqual(fromViews, readings(slices));
  assert.deepEqual(
    fromViews.map((r) => r.status.readyEndpoints),
    [2, 1],
  );
  assert.deepEqual(endpointSliceView(slices[1]!).endpoints, [
    { nodeName: 'n2', conditions: { ready: true } },
    { nodeName: 'n2', conditions: { ready: false } },
  ]);
});
