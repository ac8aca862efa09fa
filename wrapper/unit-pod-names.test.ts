import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ANNOTATION_TOPOLOGY_KEYS } from '../controllers/api/v1alpha1.ts';
import { unitStatefulSetName } from '../controllers/render/names.ts';
import type { KubeObject } from '../kube/objects.ts';
import { type NodeUnitContext, topologyKeysOf } from './filter.ts';
import { aliasUnitPodHostnames, aliasUnitPodHostnamesInEndpoints, unitPodAlias } from './unit-pod-names.ts';

const nodes: Record<string, Record<string, string>> = { a1: { zone: 'a' }, b1: { zone: 'b' }, x1: {} };
const ctx = (local: string): NodeUnitContext => ({ localLabels: nodes[local], nodeLabels: (n) => nodes[n] });
const keys = (v: string[]) =>
  topologyKeysOf({ metadata: { name: 's', namespace: 'ns', annotations: { [ANNOTATION_TOPOLOGY_KEYS]: JSON.stringify(v) } } });
const ep = (ip: string, nodeName: string, hostname?: string) => ({ addresses: [ip], nodeName, ...(hostname ? { hostname } : {}) });
const hostnames = (slices: KubeObject[]) => slices.map((s) => (s.endpoints as { hostname?: string }[]).map((e) => e.hostname));

test('unitPodAlias: the grid name and ordinal of a pod of the StatefulSet rendered for the unit', () => {
  assert.equal(unitPodAlias('mysql-a-0', 'a'), 'mysql-0');
  assert.equal(unitPodAlias('my-sql-site-1-12', 'site-1'), 'my-sql-12', 'dashes in grid and unit');
  assert.equal(unitPodAlias('mysql-a-0', 'b'), undefined, 'another unit');
  assert.equal(unitPodAlias('mysql-a', 'a'), undefined, 'no ordinal');
  assert.equal(unitPodAlias('mysql-a-01', 'a'), undefined, 'not an ordinal');
  assert.equal(unitPodAlias('web-7d9f-abcde', 'a'), undefined, 'a Deployment pod');
  // A unit value that is not a DNS label is hashed into the name: the rule is followed, not guessed.
  const sts = unitStatefulSetName('db', 'Zone_A');
  assert.notEqual(sts, 'db-Zone_A');
  assert.equal(unitPodAlias(`${sts}-3`, 'Zone_A'), 'db-3');
  assert.equal(unitPodAlias(`${sts}-3`, 'zone_a'), undefined);
  const long = 'g'.repeat(40);
  assert.equal(unitPodAlias(`${unitStatefulSetName(long, 'unit-with-a-long-value')}-0`, 'unit-with-a-long-value'), `${long}-0`);
});

test("aliasUnitPodHostnames renames only the local unit's pods, only for marked Services", () => {
  const slices: KubeObject[] = [
    { metadata: { name: 's1', namespace: 'ns' }, endpoints: [ep('1', 'a1', 'db-a-0'), ep('2', 'b1', 'db-b-0'), ep('3', 'a1')] },
    { metadata: { name: 's2', namespace: 'ns' }, endpoints: [ep('4', 'b1', 'db-a-1')] },
  ];
  assert.deepEqual(hostnames(aliasUnitPodHostnames(keys(['zone']), slices, ctx('a1'))), [['db-0', 'db-b-0', undefined], ['db-a-1']]);
  assert.deepEqual(hostnames(aliasUnitPodHostnames(keys(['zone']), slices, ctx('b1'))), [['db-a-0', 'db-0', undefined], ['db-a-1']]);
  assert.deepEqual(
    hostnames(aliasUnitPodHostnames(keys(['zone', '*']), slices, ctx('b1'))),
    [['db-a-0', 'db-0', undefined], ['db-a-1']],
    'a fallback key renames nothing of other units',
  );
  assert.equal(aliasUnitPodHostnames({ kind: 'none' }, slices, ctx('a1')), slices, 'unmarked: as is');
  assert.equal(aliasUnitPodHostnames(keys(['zone']), slices, ctx('x1')), slices, 'local node without the key');
  assert.equal(aliasUnitPodHostnames(keys(['*']), slices, ctx('a1')), slices, '"*" has no unit');
  assert.deepEqual(hostnames(slices), [['db-a-0', 'db-b-0', undefined], ['db-a-1']], 'inputs untouched');
});

test('aliasUnitPodHostnamesInEndpoints renames ready and not-ready addresses', () => {
  const endpoints: KubeObject = {
    metadata: { name: 'db', namespace: 'ns' },
    subsets: [
      {
        addresses: [{ ip: '1', nodeName: 'a1', hostname: 'db-a-0' }],
        notReadyAddresses: [{ ip: '2', nodeName: 'a1', hostname: 'db-a-1' }],
        ports: [{ port: 3306 }],
      },
    ],
  };
  const out = aliasUnitPodHostnamesInEndpoints(keys(['zone']), endpoints, ctx('a1'));
  assert.deepEqual(out.subsets, [
    {
      addresses: [{ ip: '1', nodeName: 'a1', hostname: 'db-0' }],
      notReadyAddresses: [{ ip: '2', nodeName: 'a1', hostname: 'db-1' }],
      ports: [{ port: 3306 }],
    },
  ]);
  assert.equal((endpoints.subsets as { addresses: { hostname: string }[] }[])[0]!.addresses[0]!.hostname, 'db-a-0', 'input untouched');
});
