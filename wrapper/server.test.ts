import assert from 'node:assert/strict';
import { get } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { pino } from 'pino';
import { KubeClient } from '../kube/client.ts';
import { apiVersionOf } from '../kube/objects.ts';
import { WrapperMetrics } from './metrics.ts';
import { SERVED_RESOURCES } from './resources.ts';
import { RvClock } from './rv-clock.ts';
import { ServedResource } from './served.ts';
import { buildServer, type WrapperState } from './server.ts';

const setup = async (ready = true) => {
  const clock = new RvClock();
  const metrics = new WrapperMetrics();
  const served = Object.fromEntries(
    SERVED_RESOURCES.map((s) => [
      s.resource,
      new ServedResource(s.resource, clock, { kind: s.kind, apiVersion: apiVersionOf(s), metrics }),
    ]),
  );
  const state: WrapperState = {
    specs: SERVED_RESOURCES,
    served,
    ready: () => ready,
    upstream: new KubeClient({ server: 'https://127.0.0.1:1', applyToHTTPSOptions: async () => {} }),
    metrics,
    log: pino({ level: 'silent' }),
    bookmarkIntervalMs: 60_000,
    minWatchTimeoutSeconds: 1800,
    maxWatches: 1000,
  };
  const app = await buildServer(state, { withResources: true });
  served.services!.apply('ns/a', { metadata: { name: 'a', namespace: 'ns', labels: { app: 'x' } }, spec: { clusterIP: '10.0.0.1' } });
  served.services!.apply('ns/h', { metadata: { name: 'h', namespace: 'ns' }, spec: { clusterIP: 'None' } });
  served.services!.apply('other/b', { metadata: { name: 'b', namespace: 'other' }, spec: { clusterIP: '10.0.0.2' } });
  return { app, served, clock };
};

test('list: namespaced and cluster-wide, selectors, list kind and resourceVersion', async () => {
  const { app, clock } = await setup();
  const all = await app.inject('/api/v1/services');
  assert.equal(all.statusCode, 200);
  const body = all.json();
  assert.equal(body.kind, 'ServiceList');
  assert.equal(body.metadata.resourceVersion, String(clock.current));
  assert.equal(body.items.length, 3);
  assert.deepEqual(
    (await app.inject('/api/v1/namespaces/ns/services')).json().items.map((s: { metadata: { name: string } }) => s.metadata.name),
    ['a', 'h'],
  );
  assert.deepEqual((await app.inject('/api/v1/services?fieldSelector=spec.clusterIP!%3DNone&labelSelector=app')).json().items.length, 1);
  assert.equal((await app.inject('/api/v1/namespaces/ns/services/a')).json().metadata.name, 'a');
  assert.equal((await app.inject('/api/v1/namespaces/ns/services/zz')).statusCode, 404);
  assert.equal((await app.inject('/api/v1/services?continue=abc')).statusCode, 410);
  assert.equal((await app.inject(`/api/v1/services?resourceVersion=${clock.current}&resourceVersionMatch=Exact`)).statusCode, 200);
  assert.equal((await app.inject(`/api/v1/services?resourceVersion=${clock.current - 1}&resourceVersionMatch=Exact`)).statusCode, 410);
  await app.close();
});

test('refusals and discovery', async () => {
  const { app } = await setup();
  const r = await app.inject({ method: 'POST', url: '/api/v1/namespaces/ns/services', payload: {} });
  assert.equal(r.statusCode, 403);
  assert.equal(r.json().reason, 'Forbidden');
  assert.equal((await app.inject('/api/v1/pods')).statusCode, 403);
  assert.equal((await app.inject('/api/v1/services?labelSelector=a%20in')).statusCode, 400);
  const disc = (await app.inject('/apis/discovery.k8s.io/v1')).json();
  assert.deepEqual(
    disc.resources.map((x: { name: string }) => x.name),
    ['endpointslices'],
  );
  assert.ok(
    (await app.inject('/api/v1'))
      .json()
      .resources.some((x: { name: string; verbs: string[] }) => x.name === 'events' && x.verbs.includes('create')),
  );
  await app.close();
});

test('not synced: 503 Status and /readyz 503', async () => {
  const { app } = await setup(false);
  const r = await app.inject('/api/v1/services');
  assert.equal(r.statusCode, 503);
  assert.equal(r.json().kind, 'Status');
  assert.equal((await app.inject('/readyz')).statusCode, 503);
  assert.equal((await app.inject('/healthz')).statusCode, 200);
  await app.close();
});

test('watch over HTTP: replay from a resourceVersion, live events, timeoutSeconds', async () => {
  const { app, served, clock } = await setup();
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  const rv = clock.current;
  served.services!.apply('ns/c', { metadata: { name: 'c', namespace: 'ns' } });
  const lines: { type: string; object: { metadata: { name: string } } }[] = [];
  const ended = new Promise<void>((resolve) => {
    get(`http://127.0.0.1:${port}/api/v1/namespaces/ns/services?watch=1&resourceVersion=${rv}&timeoutSeconds=1`, (res) => {
      let buf = '';
      res.on('data', (d) => {
        buf += d;
        const parts = buf.split('\n');
        buf = parts.pop()!;
        for (const p of parts) lines.push(JSON.parse(p));
        if (lines.length === 1) served.services!.apply('ns/c', undefined);
      });
      res.on('end', resolve);
    });
  });
  await ended;
  assert.deepEqual(
    lines.map((l) => `${l.type}:${l.object.metadata.name}`),
    ['ADDED:c', 'DELETED:c'],
  );
  await app.close();
});

test('close ends open watches at once', async () => {
  const { app } = await setup();
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  const ended = new Promise<void>((resolve) => {
    get(`http://127.0.0.1:${port}/api/v1/services?watch=1`, (res) => {
      res.resume();
      res.on('end', resolve);
    });
  });
  await new Promise((r) => setTimeout(r, 100));
  const started = Date.now();
  await app.close();
  await ended;
  assert.ok(Date.now() - started < 2000);
});

test('metrics: process memory and heap gauges under the Prometheus client names', async () => {
  const { app } = await setup();
  const body = (await app.inject('/metrics')).body;
  const value = (name: string) => Number(new RegExp(`^${name} (\\d+(?:\\.\\d+)?)$`, 'm').exec(body)?.[1] ?? Number.NaN);
  assert.ok(value('process_resident_memory_bytes') > 10 * 1024 * 1024, 'RSS in bytes');
  assert.ok(value('nodejs_heap_size_used_bytes') > 1024 * 1024, 'heap used in bytes');
  assert.ok(value('nodejs_heap_size_total_bytes') >= value('nodejs_heap_size_used_bytes'));
  assert.match(body, /^# TYPE process_cpu_seconds_total counter$/m);
  assert.match(body, /^nodejs_heap_space_size_used_bytes\{space="old"\} \d+$/m);
  assert.match(body, /^servicegroup_wrapper_objects\{resource="services"\} 3$/m);
  await app.close();
});
