import assert from 'node:assert/strict';
import { test } from 'node:test';
import { podView, slimNode } from './cache-views.ts';
import { findMisplacedPods } from './eviction.ts';

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
