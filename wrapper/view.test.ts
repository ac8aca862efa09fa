import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { ANNOTATION_TOPOLOGY_KEYS } from '../controllers/api/v1alpha1.ts';
import { apiVersionOf, type KubeObject } from '../kube/objects.ts';
import { SERVED_RESOURCES } from './resources.ts';
import { RvClock } from './rv-clock.ts';
import { ServedResource } from './served.ts';
import { NodeUnitView, type ServedStores } from './view.ts';
import type { WatchSink } from './watcher.ts';

const setup = () => {
  const clock = new RvClock();
  const served = Object.fromEntries(
    SERVED_RESOURCES.map((s) => [s.resource, new ServedResource(s.resource, clock, { kind: s.kind, apiVersion: apiVersionOf(s) })]),
  ) as unknown as ServedStores;
  const view = new NodeUnitView('a1', served, pino({ level: 'silent' }));
  const events: string[] = [];
  const sink: WatchSink = {
    write(b) {
      for (const l of b.toString().trim().split('\n')) {
        const e = JSON.parse(l);
        events.push(
          `${e.type}:${e.object.metadata.name}:${e.object.endpoints.map((x: { addresses: string[] }) => x.addresses[0]).join(',')}`,
        );
      }
      return true;
    },
    end() {},
    writableLength: 0,
    writableEnded: false,
  };
  return { view, served, events, sink };
};
const node = (name: string, zone?: string): KubeObject => ({ metadata: { name, labels: zone ? { zone } : {} } });
const svc = (name: string, marked: boolean): KubeObject => ({
  metadata: { name, namespace: 'ns', annotations: marked ? { [ANNOTATION_TOPOLOGY_KEYS]: '["zone"]' } : {} },
});
const slice = (name: string, service: string, eps: [string, string][]): KubeObject => ({
  metadata: { name, namespace: 'ns', labels: { 'kubernetes.io/service-name': service } },
  endpoints: eps.map(([ip, nodeName]) => ({ addresses: [ip], nodeName, conditions: { ready: true } })),
});

test('relabels, annotation changes and node removal emit MODIFIED for exactly the affected slices', () => {
  const { view, served, events, sink } = setup();
  for (const n of [node('a1', 'a'), node('b1', 'b'), node('c1', 'c')]) view.upsert('nodes', n);
  view.upsert('services', svc('web', true));
  view.upsert('services', svc('db', true));
  view.upsert('services', svc('plain', false));
  view.upsert(
    'endpointslices',
    slice('web-1', 'web', [
      ['1', 'a1'],
      ['2', 'b1'],
    ]),
  );
  view.upsert('endpointslices', slice('web-2', 'web', [['3', 'b1']]));
  view.upsert('endpointslices', slice('db-1', 'db', [['4', 'c1']]));
  view.upsert('endpointslices', slice('plain-1', 'plain', [['5', 'b1']]));
  served.endpointslices.watch(sink, {
    fromRv: served.endpointslices.clock.current,
    initialEventsEnd: false,
    bookmarks: false,
    match: undefined,
  });

  // b1 joins zone a: web's slices gain endpoints; db (no endpoint on b1) and plain are untouched.
  let before = view.recomputations;
  view.upsert('nodes', node('b1', 'a'));
  assert.deepEqual(events.splice(0), ['MODIFIED:web-1:1,2', 'MODIFIED:web-2:3']);
  assert.equal(view.recomputations - before, 1, 'only the Service with endpoints on b1');

  // A label change on a node with no endpoints: nothing recomputed.
  before = view.recomputations;
  view.upsert('nodes', node('z9', 'a'));
  assert.equal(view.recomputations, before);
  assert.deepEqual(events.splice(0), []);

  // The local node moves to zone c: every marked Service is recomputed (its own endpoint 1 stays).
  view.upsert('nodes', node('a1', 'c'));
  assert.deepEqual(events.splice(0).sort(), ['MODIFIED:db-1:4', 'MODIFIED:web-1:1', 'MODIFIED:web-2:']);

  // db loses its annotation: its slice is served whole (unchanged here: all of db is in zone c).
  view.upsert('services', svc('db', false));
  assert.deepEqual(events.splice(0), []);
  view.upsert('services', svc('web', false));
  assert.deepEqual(events.splice(0), ['MODIFIED:web-1:1,2', 'MODIFIED:web-2:3']);
  view.upsert('services', svc('web', true));
  assert.deepEqual(events.splice(0), ['MODIFIED:web-1:1', 'MODIFIED:web-2:']);

  view.upsert('services', svc('db', true));
  assert.deepEqual(events.splice(0), []);
  // The node of db's endpoint disappears: unknown node, endpoint dropped.
  view.delete('nodes', node('c1'));
  assert.deepEqual(events.splice(0), ['MODIFIED:db-1:']);
  assert.deepEqual(view.endpointTotals, { kept: 1, dropped: 3 });

  // A slice moved to another Service (its label changed), then one deleted.
  view.upsert('endpointslices', slice('web-2', 'db', [['3', 'b1']]));
  view.delete('endpointslices', slice('web-1', 'web', []));
  assert.deepEqual(events.splice(0), ['MODIFIED:web-2:', 'DELETED:web-1:1']);
  assert.equal(served.endpointslices.count, 3);

  // The indexes followed the move: b1 joining the local unit recomputes db (now holding web-2) only.
  before = view.recomputations;
  view.upsert('nodes', node('b1', 'c'));
  assert.deepEqual(events.splice(0), ['MODIFIED:web-2:3']);
  assert.equal(view.recomputations - before, 1, 'web has no endpoint left on b1');
});

test('Services with the same topology annotation share one parsed copy of it, and each keeps its own', () => {
  const { view, served } = setup();
  for (const n of [node('a1', 'a'), node('b1', 'b')]) view.upsert('nodes', n);
  const keysOf = (v: NodeUnitView, key: string) => (v as unknown as { topology: Map<string, unknown> }).topology.get(key);
  for (const name of ['one', 'two']) {
    view.upsert('services', svc(name, true));
    view.upsert(
      'endpointslices',
      slice(`${name}-1`, name, [
        ['1', 'a1'],
        ['2', 'b1'],
      ]),
    );
  }
  assert.equal(keysOf(view, 'ns/one'), keysOf(view, 'ns/two'));
  view.upsert('services', { metadata: { name: 'two', namespace: 'ns', annotations: { [ANNOTATION_TOPOLOGY_KEYS]: '["*"]' } } });
  assert.notEqual(keysOf(view, 'ns/one'), keysOf(view, 'ns/two'));
  const ips = (name: string) =>
    (served.endpointslices.get(`ns/${name}`)!.endpoints as { addresses: string[] }[]).map((e) => e.addresses[0]);
  assert.deepEqual(ips('one-1'), ['1']);
  assert.deepEqual(ips('two-1'), ['1', '2']);
});

test('a Namespace annotation makes its Services unit-local unless a Service says otherwise', () => {
  const { view, served } = setup();
  const endpointsOf = (name: string) =>
    ((served.endpointslices.get(`ns/${name}`)?.endpoints as { addresses: string[] }[] | undefined) ?? []).map((e) => e.addresses[0]);
  const namespace = (annotations: Record<string, string>): KubeObject => ({ metadata: { name: 'ns', annotations } });
  for (const n of [node('a1', 'a'), node('b1', 'b')]) view.upsert('nodes', n);
  view.upsert('services', svc('inherits', false));
  const optOut: KubeObject = { metadata: { name: 'opt-out', namespace: 'ns', annotations: { [ANNOTATION_TOPOLOGY_KEYS]: '[]' } } };
  view.upsert('services', optOut);
  for (const name of ['inherits', 'opt-out'])
    view.upsert(
      'endpointslices',
      slice(`${name}`, name, [
        ['1', 'a1'],
        ['2', 'b1'],
      ]),
    );
  assert.deepEqual(endpointsOf('inherits'), ['1', '2']);

  view.upsert('namespaces', namespace({ [ANNOTATION_TOPOLOGY_KEYS]: '["zone"]' }));
  assert.deepEqual(endpointsOf('inherits'), ['1'], 'follows the Namespace');
  assert.deepEqual(endpointsOf('opt-out'), ['1', '2'], 'its own empty list wins');

  // A Service created later in the Namespace is filtered from its first version.
  view.upsert('services', svc('late', false));
  view.upsert('endpointslices', slice('late', 'late', [['3', 'b1']]));
  assert.deepEqual(endpointsOf('late'), []);

  // The Service's own annotation wins; dropping it falls back to the Namespace's.
  view.upsert('services', { metadata: { name: 'inherits', namespace: 'ns', annotations: { topologyKeys: '["region"]' } } });
  assert.deepEqual(endpointsOf('inherits'), [], 'no node has a region: nothing is proven local');
  view.upsert('services', svc('inherits', false));
  assert.deepEqual(endpointsOf('inherits'), ['1']);

  // The Namespace stops opting in (SuperEdge's spelling does not count on a Namespace).
  view.upsert('namespaces', namespace({ topologyKeys: '["zone"]' }));
  assert.deepEqual(endpointsOf('inherits'), ['1', '2']);
  view.upsert('namespaces', namespace({ [ANNOTATION_TOPOLOGY_KEYS]: '["zone"]' }));
  view.delete('namespaces', namespace({}));
  assert.deepEqual(endpointsOf('late'), ['3']);
});

test('membership from NodeUnits: member lists place other nodes, the own Node places this one, and disagreement is reported', () => {
  const clock = new RvClock();
  const served = Object.fromEntries(
    SERVED_RESOURCES.map((s) => [s.resource, new ServedResource(s.resource, clock, { kind: s.kind, apiVersion: apiVersionOf(s) })]),
  ) as unknown as ServedStores;
  const gauges = new Map<string, number>();
  const metrics = { endpoints() {}, setGauge: (name: string, _h: string, _l: unknown, v: number) => void gauges.set(name, v) };
  const view = new NodeUnitView('a1', served, pino({ level: 'silent' }), metrics, 'nodeunits');
  const endpointsOf = (name: string) =>
    ((served.endpointslices.get(`ns/${name}`)?.endpoints as { addresses: string[] }[] | undefined) ?? []).map((e) => e.addresses[0]);
  const unit = (name: string, key: string, value: string, nodes: string[]): KubeObject => ({
    metadata: { name },
    spec: { key, value },
    status: { nodes },
  });
  view.upsert('nodes', node('a1', 'a'));
  view.upsert('services', svc('web', true));
  view.upsert(
    'endpointslices',
    slice('web-1', 'web', [
      ['1', 'a1'],
      ['2', 'a2'],
      ['3', 'b1'],
    ]),
  );
  // No NodeUnit yet: only this node's own endpoint can be proven local.
  assert.deepEqual(endpointsOf('web-1'), ['1']);

  view.upsert('nodeunits', unit('zone.a', 'zone', 'a', ['a1', 'a2']));
  view.upsert('nodeunits', unit('zone.b', 'zone', 'b', ['b1']));
  assert.deepEqual(endpointsOf('web-1'), ['1', '2']);
  assert.equal(gauges.get('servicegroup_wrapper_membership_stale_since_timestamp_seconds') ?? 0, 0);
  assert.ok(gauges.get('servicegroup_wrapper_membership_updated_timestamp_seconds')! > 0);

  // Nodes of other units' Node objects are ignored (they are not watched in this mode).
  view.upsert('nodes', node('b1', 'a'));
  assert.deepEqual(endpointsOf('web-1'), ['1', '2']);

  // b1 moves to zone a: zone.a gains it before zone.b loses it, or the other way round.
  view.upsert('nodeunits', unit('zone.a', 'zone', 'a', ['a1', 'a2', 'b1']));
  assert.deepEqual(endpointsOf('web-1'), ['1', '2', '3']);
  view.upsert('nodeunits', unit('zone.b', 'zone', 'b', []));
  assert.deepEqual(endpointsOf('web-1'), ['1', '2', '3'], 'the stale removal does not undo the newer claim');
  view.upsert('nodeunits', unit('zone.a', 'zone', 'a', ['a1', 'a2']));
  assert.deepEqual(endpointsOf('web-1'), ['1', '2']);
  view.delete('nodeunits', unit('zone.a', 'zone', 'a', []));
  assert.deepEqual(endpointsOf('web-1'), ['1'], 'a deleted unit places nobody');

  // This node is relabelled: its own Node says so at once; the NodeUnits lag (controller down).
  view.upsert('nodeunits', unit('zone.a', 'zone', 'a', ['a1', 'a2']));
  view.upsert('nodes', node('a1', 'b'));
  assert.deepEqual(endpointsOf('web-1'), ['1'], 'a1 is in b by its own labels; b has no other member yet');
  assert.ok(gauges.get('servicegroup_wrapper_membership_stale_since_timestamp_seconds')! > 0, 'disagreement reported');
  view.upsert('nodeunits', unit('zone.a', 'zone', 'a', ['a2']));
  view.upsert('nodeunits', unit('zone.b', 'zone', 'b', ['a1', 'b1']));
  assert.deepEqual(endpointsOf('web-1'), ['1', '3']);
  assert.equal(gauges.get('servicegroup_wrapper_membership_stale_since_timestamp_seconds'), 0, 'agreement again');
});

test("a StatefulSetGrid's pods are served under their unit-free hostname, following the local node's unit", () => {
  const { view, served } = setup();
  for (const n of [node('a1', 'a'), node('b1', 'b')]) view.upsert('nodes', n);
  view.upsert('services', svc('db', true));
  view.upsert('endpointslices', {
    ...slice('db-1', 'db', [
      ['1', 'a1'],
      ['2', 'b1'],
    ]),
    endpoints: [
      { addresses: ['1'], nodeName: 'a1', hostname: 'db-a-0', conditions: { ready: true } },
      { addresses: ['2'], nodeName: 'b1', hostname: 'db-b-0', conditions: { ready: true } },
    ],
  });
  view.upsert('namespaces', { metadata: { name: 'ns' } });
  const hostnames = () =>
    ((served.endpointslices.get('ns/db-1')?.endpoints ?? []) as { addresses: string[]; hostname: string }[]).map(
      (e) => `${e.addresses[0]}=${e.hostname}`,
    );
  assert.deepEqual(hostnames(), ['1=db-0']);
  // The local node moves to unit b: b's pod 0 now answers to db-0.
  view.upsert('nodes', node('a1', 'b'));
  view.upsert('nodes', node('b1', 'b'));
  assert.deepEqual(hostnames(), ['1=db-a-0', '2=db-0']);
  assert.equal(served.namespaces.count, 1, 'namespaces are served as they are');
});

test('membership from Nodes ignores NodeUnits (e.g. in a state saved with the other source)', () => {
  const { view, served } = setup();
  view.upsert('nodes', node('a1', 'a'));
  view.upsert('services', svc('web', true));
  view.upsert(
    'endpointslices',
    slice('web-1', 'web', [
      ['1', 'a1'],
      ['2', 'b1'],
    ]),
  );
  view.upsert('nodeunits', { metadata: { name: 'zone.a' }, spec: { key: 'zone', value: 'a' }, status: { nodes: ['a1', 'b1'] } });
  const eps = ((served.endpointslices.get('ns/web-1')?.endpoints ?? []) as { addresses: string[] }[]).map((e) => e.addresses[0]);
  assert.deepEqual(eps, ['1'], 'b1 is not known as a Node: its endpoint stays out');
});
