import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ANNOTATION_TOPOLOGY_KEYS, ANNOTATION_TOPOLOGY_KEYS_SUPEREDGE } from '../controllers/api/v1alpha1.ts';
import type { KubeObject } from '../kube/objects.ts';
import { effectiveTopologyKeys, filterEndpointSlices, filterEndpoints, type NodeUnitContext, topologyKeysOf } from './filter.ts';

const nodes: Record<string, Record<string, string>> = {
  a1: { zone: 'a', region: 'r1' },
  a2: { zone: 'a', region: 'r1' },
  b1: { zone: 'b', region: 'r1' },
  c1: { zone: 'c', region: 'r2' },
  nozone: { region: 'r1' },
};
const ctx = (local: string): NodeUnitContext => ({ localLabels: nodes[local], nodeLabels: (n) => nodes[n] });
const svc = (annotations: Record<string, string>): KubeObject => ({ metadata: { name: 's', namespace: 'ns', annotations } });
const ep = (ip: string, nodeName?: string, ready = true) => ({ addresses: [ip], nodeName, conditions: { ready } });
const slice = (name: string, endpoints: unknown[]): KubeObject => ({ metadata: { name, namespace: 'ns' }, endpoints });
const ips = (slices: KubeObject[]) => slices.map((s) => (s.endpoints as { addresses: string[] }[]).map((e) => e.addresses[0]));
const keys = (v: string[]) => topologyKeysOf(svc({ [ANNOTATION_TOPOLOGY_KEYS]: JSON.stringify(v) }));

test('topology keys: ours, SuperEdge spelling, absent, empty, invalid', () => {
  assert.deepEqual(keys(['zone']), { kind: 'keys', keys: ['zone'], source: ANNOTATION_TOPOLOGY_KEYS });
  assert.deepEqual(topologyKeysOf(svc({ [ANNOTATION_TOPOLOGY_KEYS_SUPEREDGE]: '["zone"]' })).kind, 'keys');
  assert.equal(topologyKeysOf(svc({})).kind, 'none');
  assert.equal(topologyKeysOf(undefined).kind, 'none');
  assert.equal(keys([]).kind, 'none');
  assert.equal(topologyKeysOf(svc({ [ANNOTATION_TOPOLOGY_KEYS]: 'zone' })).kind, 'invalid');
  assert.equal(topologyKeysOf(svc({ [ANNOTATION_TOPOLOGY_KEYS]: '[1]' })).kind, 'invalid');
});

test('keeps only the local unit, across all slices of the Service, keeping empty slices', () => {
  const slices = [slice('s1', [ep('1', 'a1'), ep('2', 'b1')]), slice('s2', [ep('3', 'b1')]), slice('s3', [ep('4', 'a2')])];
  const r = filterEndpointSlices(keys(['zone']), slices, ctx('a1'));
  assert.deepEqual(ips(r.slices), [['1'], [], ['4']]);
  assert.deepEqual(r.stats, { kept: 2, dropped: 2 });
  assert.deepEqual(ips(slices), [['1', '2'], ['3'], ['4']], 'inputs untouched');
  const none = filterEndpointSlices(keys(['zone']), slices, ctx('c1'));
  assert.deepEqual(ips(none.slices), [[], [], []], 'nothing left: slices still served, empty');
});

test('first key with a ready endpoint anywhere in the Service wins', () => {
  // a2 is in zone a: the ready endpoint 2 on a1 makes zone win.
  const slices = [slice('s1', [ep('1', 'c1', false), ep('2', 'a1')]), slice('s2', [ep('3', 'b1')])];
  assert.deepEqual(ips(filterEndpointSlices(keys(['zone', 'region']), slices, ctx('a2')).slices), [['2'], []]);
  // Local node b1 in zone b: ready endpoint 3 in slice s2 makes zone win, slice s1 becomes empty.
  assert.deepEqual(ips(filterEndpointSlices(keys(['zone', 'region']), slices, ctx('b1')).slices), [[], ['3']]);
  // c1: zone c has only a not-ready endpoint, region r2 too: "*" wins.
  assert.deepEqual(ips(filterEndpointSlices(keys(['zone', 'region', '*']), slices, ctx('c1')).slices), [['1', '2'], ['3']]);
  // No key has a ready endpoint and no "*": the first key decides (own unit's not-ready stays).
  assert.deepEqual(ips(filterEndpointSlices(keys(['zone', 'region']), slices, ctx('c1')).slices), [['1'], []]);
  // A nil ready condition counts as ready.
  const unknown = [slice('s', [{ addresses: ['9'], nodeName: 'a1', conditions: {} }])];
  assert.deepEqual(ips(filterEndpointSlices(keys(['zone', '*']), unknown, ctx('a2')).slices), [['9']]);
});

test("SuperEdge's topologyKeys keeps endpoints matching the local node under any key, as SuperEdge's wrapper does", () => {
  const superedge = (v: string[]) => topologyKeysOf(svc({ [ANNOTATION_TOPOLOGY_KEYS_SUPEREDGE]: JSON.stringify(v) }));
  const slices = [slice('s1', [ep('1', 'c1'), ep('2', 'a1')]), slice('s2', [ep('3', 'b1')])];
  // a2: zone a (endpoint 2) or region r1 (endpoints 2 and 3); ours would stop at zone.
  assert.deepEqual(ips(filterEndpointSlices(superedge(['zone', 'region']), slices, ctx('a2')).slices), [['2'], ['3']]);
  assert.deepEqual(ips(filterEndpointSlices(keys(['zone', 'region']), slices, ctx('a2')).slices), [['2'], []]);
  // One key: the same either way.
  assert.deepEqual(ips(filterEndpointSlices(superedge(['zone']), slices, ctx('a2')).slices), [['2'], []]);
  const eps: KubeObject = {
    metadata: { name: 's', namespace: 'ns' },
    subsets: [
      {
        addresses: [
          { ip: '1', nodeName: 'c1' },
          { ip: '2', nodeName: 'a1' },
          { ip: '3', nodeName: 'b1' },
        ],
      },
    ],
  };
  const kept = filterEndpoints(superedge(['zone', 'region']), eps, ctx('a2')).endpoints;
  assert.deepEqual(
    (kept.subsets as { addresses: { ip: string }[] }[])[0]!.addresses.map((a) => a.ip),
    ['2', '3'],
  );
});

test('no nodeName, unknown node, local node without the key: excluded, never a crash', () => {
  const slices = [slice('s', [ep('1', undefined), ep('2', 'ghost'), ep('3', 'a1'), { addresses: ['4'] }])];
  assert.deepEqual(ips(filterEndpointSlices(keys(['zone']), slices, ctx('a2')).slices), [['3']]);
  assert.deepEqual(ips(filterEndpointSlices(keys(['zone']), slices, ctx('nozone')).slices), [[]]);
  assert.deepEqual(ips(filterEndpointSlices(keys(['zone']), slices, { localLabels: undefined, nodeLabels: () => undefined }).slices), [[]]);
  assert.deepEqual(ips(filterEndpointSlices(keys(['*']), slices, ctx('nozone')).slices), [['1', '2', '3', '4']]);
  assert.deepEqual(filterEndpointSlices(keys(['zone']), [slice('e', undefined as never)], ctx('a1')).slices[0]!.endpoints, []);
});

test('unmarked Service: slices returned as they are', () => {
  const slices = [slice('s', [ep('1', 'b1')])];
  assert.equal(filterEndpointSlices({ kind: 'none' }, slices, ctx('a1')).slices, slices);
});

test('core/v1 Endpoints follow the same rule', () => {
  const endpoints: KubeObject = {
    metadata: { name: 's', namespace: 'ns' },
    subsets: [
      {
        addresses: [
          { ip: '1', nodeName: 'a1' },
          { ip: '2', nodeName: 'b1' },
        ],
        notReadyAddresses: [{ ip: '3', nodeName: 'a2' }],
        ports: [{ port: 80 }],
      },
      { addresses: [{ ip: '4', nodeName: 'b1' }], ports: [{ port: 81 }] },
    ],
  };
  const r = filterEndpoints(keys(['zone']), endpoints, ctx('a1'));
  assert.deepEqual(r.endpoints.subsets, [
    { addresses: [{ ip: '1', nodeName: 'a1' }], notReadyAddresses: [{ ip: '3', nodeName: 'a2' }], ports: [{ port: 80 }] },
  ]);
  assert.deepEqual(r.stats, { kept: 2, dropped: 2 });
  assert.equal(filterEndpoints(keys(['zone']), endpoints, ctx('c1')).endpoints.subsets, undefined);
});

test("a Namespace's keys: taken by its Services without an annotation of their own, never by default/kubernetes", () => {
  const zone = topologyKeysOf({ metadata: { name: 'ns', annotations: { [ANNOTATION_TOPOLOGY_KEYS]: '["zone"]' } } });
  const service = (namespace: string, name: string, annotations?: Record<string, string>): KubeObject => ({
    metadata: { namespace, name, ...(annotations ? { annotations } : {}) },
  });
  assert.deepEqual(effectiveTopologyKeys(service('default', 'web'), zone), zone);
  assert.deepEqual(effectiveTopologyKeys(service('default', 'kubernetes'), zone), { kind: 'none' }, 'the apiservers are on no node');
  assert.deepEqual(effectiveTopologyKeys(service('other', 'kubernetes'), zone), zone);
  assert.deepEqual(
    effectiveTopologyKeys(service('default', 'kubernetes', { [ANNOTATION_TOPOLOGY_KEYS]: '["zone"]' }), { kind: 'none' }),
    zone,
    'its own annotation still counts',
  );
  assert.deepEqual(effectiveTopologyKeys(service('default', 'web', { [ANNOTATION_TOPOLOGY_KEYS]: '[]' }), zone).kind, 'none');
});
