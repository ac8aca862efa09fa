import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { ANNOTATION_TOPOLOGY_KEYS } from '../controllers/api/v1alpha1.ts';
import { apiVersionOf, type KubeObject } from '../kube/objects.ts';
import { SERVED_RESOURCES } from './resources.ts';
import { RvClock, ServedResource, type WatchSink } from './served.ts';
import { NodeUnitView, type ServedStores } from './view.ts';

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
