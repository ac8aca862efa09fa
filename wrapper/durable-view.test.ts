import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pino } from 'pino';
import { ANNOTATION_TOPOLOGY_KEYS } from '../controllers/api/v1alpha1.ts';
import { apiVersionOf, type KubeObject } from '../kube/objects.ts';
import { liveBytes } from '../test/live-memory.ts';
import { DurableView } from './durable-view.ts';
import { SERVED_RESOURCES } from './resources.ts';
import { RvClock } from './rv-clock.ts';
import { ServedResource } from './served.ts';
import { StateStore } from './state.ts';
import { NodeUnitView, type ServedStores } from './view.ts';

const RESOURCES = SERVED_RESOURCES.map((s) => s.resource);
const log = pino({ level: 'silent' });
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function setup(dir: string) {
  const clock = new RvClock();
  const served = Object.fromEntries(
    SERVED_RESOURCES.map((s) => [s.resource, new ServedResource(s.resource, clock, { kind: s.kind, apiVersion: apiVersionOf(s) })]),
  ) as unknown as ServedStores;
  const view = new NodeUnitView('a1', served, log);
  const store = new StateStore({ dir, node: 'a1', log, resources: RESOURCES });
  const durable = new DurableView({ view, store, log, snapshotIntervalMs: 3_600_000, resources: RESOURCES });
  return { served, durable };
}

const node = (name: string, zone: string): KubeObject => ({ metadata: { name, labels: { zone } } });
const svc = (name: string): KubeObject => ({
  metadata: { name, namespace: 'ns', annotations: { [ANNOTATION_TOPOLOGY_KEYS]: '["zone"]' } },
});
const slice = (name: string, service: string, eps: [string, string][]): KubeObject => ({
  metadata: { name, namespace: 'ns', labels: { 'kubernetes.io/service-name': service } },
  endpoints: eps.map(([ip, nodeName]) => ({ addresses: [ip], nodeName, conditions: { ready: true } })),
});
const ips = (o: Record<string, unknown> | undefined) => (o?.endpoints as { addresses: string[] }[] | undefined)?.map((e) => e.addresses[0]);

test('no snapshot of a view still filling up; once every resource is listed, one that restores the same filtered view', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'durable-view-'));
  dirs.push(dir);
  const first = setup(dir);
  first.durable.upsert('nodes', node('a1', 'a'));
  first.durable.upsert('nodes', node('b1', 'b'));
  first.durable.listed('nodes');
  first.durable.upsert('services', svc('web'));
  first.durable.listed('services');
  await first.durable.flush();
  assert.deepEqual(readdirSync(dir), [], 'Services without their slices would be served as complete');
  first.durable.upsert(
    'endpointslices',
    slice('web-1', 'web', [
      ['10.0.0.1', 'a1'],
      ['10.0.0.2', 'b1'],
    ]),
  );
  for (const r of ['endpointslices', 'endpoints', 'servicecidrs', 'namespaces']) first.durable.listed(r);
  await first.durable.flush();
  assert.deepEqual(readdirSync(dir), ['snapshot.1']);
  first.durable.stop();

  const second = setup(dir);
  assert.equal(second.durable.restore()?.header.generation, 1);
  assert.deepEqual(ips(second.served.endpointslices.get('ns/web-1')), ['10.0.0.1'], 'restored and filtered for unit a');
  assert.ok(second.durable.restored);
  second.durable.stop();
});

test('after a restore, the first upstream list deletes what upstream lost meanwhile and keeps the rest without events', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'durable-view-'));
  dirs.push(dir);
  const first = setup(dir);
  for (const n of [node('a1', 'a')]) first.durable.upsert('nodes', n);
  for (const s of [svc('web'), svc('old')]) first.durable.upsert('services', s);
  for (const r of RESOURCES) first.durable.listed(r);
  await first.durable.flush();
  first.durable.stop();

  const second = setup(dir);
  second.durable.restore();
  const rv = second.served.services.clock.current;
  // Upstream answers: 'web' unchanged, 'old' gone.
  second.durable.upsert('services', svc('web'));
  assert.equal(second.served.services.clock.current, rv, 'an unchanged object emits nothing');
  second.durable.listed('services');
  assert.equal(second.served.services.get('ns/old'), undefined);
  assert.ok(second.served.services.get('ns/web'));
  assert.equal(second.served.services.clock.current, rv + 1, 'one event: the deletion');
  for (const r of RESOURCES) second.durable.listed(r);
  assert.equal(second.durable.restored, undefined, 'every resource listed: the saved state is no longer what is served');
  second.durable.stop();
});

test('with NodeUnit membership, the NodeUnits are saved and a restore places the other nodes again', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'durable-view-'));
  dirs.push(dir);
  const resources = [...RESOURCES, 'nodeunits'];
  const start = () => {
    const clock = new RvClock();
    const served = Object.fromEntries(
      SERVED_RESOURCES.map((s) => [s.resource, new ServedResource(s.resource, clock, { kind: s.kind, apiVersion: apiVersionOf(s) })]),
    ) as unknown as ServedStores;
    const view = new NodeUnitView('a1', served, log, undefined, 'nodeunits');
    const store = new StateStore({ dir, node: 'a1', log, resources });
    return { served, durable: new DurableView({ view, store, log, snapshotIntervalMs: 3_600_000, resources }) };
  };
  const first = start();
  first.durable.upsert('nodes', node('a1', 'a'));
  first.durable.upsert('nodeunits', { metadata: { name: 'zone.a' }, spec: { key: 'zone', value: 'a' }, status: { nodes: ['a1', 'a2'] } });
  first.durable.upsert('services', svc('web'));
  first.durable.upsert(
    'endpointslices',
    slice('web-1', 'web', [
      ['10.0.0.1', 'a1'],
      ['10.0.0.2', 'a2'],
      ['10.0.0.3', 'b1'],
    ]),
  );
  assert.deepEqual(ips(first.served.endpointslices.get('ns/web-1')), ['10.0.0.1', '10.0.0.2']);
  for (const r of resources) first.durable.listed(r);
  await first.durable.flush();
  first.durable.stop();

  const second = start();
  assert.ok(second.durable.restore());
  assert.deepEqual(ips(second.served.endpointslices.get('ns/web-1')), ['10.0.0.1', '10.0.0.2'], 'a2 is still known to be in unit a');
  second.durable.stop();
});

test('a restored state is not kept twice: what restore() returns holds no parsed objects', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'durable-view-'));
  dirs.push(dir);
  // 1,000 Services of 10 KB each (served as they come): 10 MB of state.
  const note = 'n'.repeat(10_000);
  const store = new StateStore({ dir, node: 'a1', log, resources: RESOURCES });
  const saved: [string, string][] = Array.from({ length: 1_000 }, (_, i) => [
    'services',
    JSON.stringify({ metadata: { name: `s-${i}`, namespace: 'ns', annotations: { note } } }),
  ]);
  assert.equal(await store.save({}, saved), true);
  saved.length = 0;
  const before = await liveBytes();
  const restoredView = setup(dir);
  const restored = restoredView.durable.restore();
  const grown = (await liveBytes()) - before;
  assert.equal(restoredView.served.services.count, 1_000);
  assert.equal(restored?.objects, 1_000);
  // The served copy is the state's size; the parsed objects would be as much again.
  assert.ok(grown < 15 * 1048576, `${(grown / 1048576).toFixed(1)} MiB live after restoring 10 MB of Services`);
});
