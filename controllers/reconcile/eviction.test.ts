import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KubeObject } from '../../kube/objects.ts';
import { findMisplacedPods } from './eviction.ts';

function pod(name: string, unit: string, node: string | undefined, owner = `web-${unit}-7d4b9c`, extra: object = {}): KubeObject {
  return {
    metadata: {
      name,
      namespace: 'ns',
      labels: { 'servicegroup.io/grid': 'web', 'servicegroup.io/unit': unit },
      ownerReferences: [{ kind: 'ReplicaSet', name: owner, controller: true, uid: 'x' }],
      ...extra,
    },
    spec: node ? { nodeName: node } : {},
  };
}

const nodes: Record<string, Record<string, string>> = {
  n1: { zone: 'a' },
  n2: { zone: 'b' },
  n3: {},
};
const deployments = new Map([
  ['a', 'web-a'],
  ['b', 'web-b'],
]);

test('a pod on a node of another unit, or of no unit, is misplaced; sorted by name', () => {
  const out = findMisplacedPods(
    [pod('web-a-2', 'a', 'n3'), pod('web-a-1', 'a', 'n2'), pod('web-a-0', 'a', 'n1'), pod('web-b-0', 'b', 'n2')],
    deployments,
    'zone',
    (n) => nodes[n],
  );
  assert.deepEqual(
    out.map((m) => [m.name, m.node, m.unit, m.nodeUnit]),
    [
      ['web-a-1', 'n2', 'a', 'b'],
      ['web-a-2', 'n3', 'a', undefined],
    ],
  );
});

test('pods not scheduled, on unknown nodes, of units not rendered or not made by the unit Deployment are left out', () => {
  const out = findMisplacedPods(
    [
      pod('pending', 'a', undefined),
      pod('gone-node', 'a', 'n9'),
      pod('no-unit', 'c', 'n2'),
      pod('foreign', 'a', 'n2', 'other-a-1'),
      pod('lookalike', 'a', 'n2', 'web-ab-1'),
    ],
    deployments,
    'zone',
    (n) => nodes[n],
  );
  assert.deepEqual(out, []);
});

test('a terminating pod is reported as such', () => {
  const [m] = findMisplacedPods(
    [pod('p', 'a', 'n2', undefined, { deletionTimestamp: '2026-01-01T00:00:00Z' })],
    deployments,
    'zone',
    (n) => nodes[n],
  );
  assert.equal(m?.terminating, true);
});
