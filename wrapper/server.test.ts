import assert from 'node:assert/strict';
import { once } from 'node:events';
import { get, type IncomingHttpHeaders, request } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { test } from 'node:test';
import { pino } from 'pino';
import { KubeClient } from '../kube/client.ts';
import { apiVersionOf } from '../kube/objects.ts';
import { WrapperMetrics } from './metrics.ts';
import { SERVED_RESOURCES } from './resources.ts';
import { RvClock } from './rv-clock.ts';
import { ServedResource } from './served.ts';
import { buildServer, type WrapperServer, type WrapperState } from './server.ts';

/** A request to the server over HTTP (listening on a free loopback port first), its answer read whole. */
async function inject(app: WrapperServer, r: string | { method: string; url: string; payload?: object; headers?: Record<string, string> }) {
  const { method, url, payload, headers } = typeof r === 'string' ? { method: 'GET', url: r, payload: undefined, headers: {} } : r;
  if (!app.server.listening) await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  const body = payload === undefined ? undefined : JSON.stringify(payload);
  return new Promise<{ statusCode: number; headers: IncomingHttpHeaders; body: string; json(): any }>((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method, path: url, headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ statusCode: res.statusCode!, headers: res.headers, body: text, json: () => JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

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
  const app = buildServer(state, { withResources: true });
  served.services!.apply('ns/a', { metadata: { name: 'a', namespace: 'ns', labels: { app: 'x' } }, spec: { clusterIP: '10.0.0.1' } });
  served.services!.apply('ns/h', { metadata: { name: 'h', namespace: 'ns' }, spec: { clusterIP: 'None' } });
  served.services!.apply('other/b', { metadata: { name: 'b', namespace: 'other' }, spec: { clusterIP: '10.0.0.2' } });
  return { app, served, clock, state };
};

test('list: namespaced and cluster-wide, selectors, list kind and resourceVersion', async () => {
  const { app, clock } = await setup();
  const all = await inject(app, '/api/v1/services');
  assert.equal(all.statusCode, 200);
  const body = all.json();
  assert.equal(body.kind, 'ServiceList');
  assert.equal(body.metadata.resourceVersion, String(clock.current));
  assert.equal(body.items.length, 3);
  assert.deepEqual(
    (await inject(app, '/api/v1/namespaces/ns/services')).json().items.map((s: { metadata: { name: string } }) => s.metadata.name),
    ['a', 'h'],
  );
  assert.deepEqual((await inject(app, '/api/v1/services?fieldSelector=spec.clusterIP!%3DNone&labelSelector=app')).json().items.length, 1);
  assert.equal((await inject(app, '/api/v1/namespaces/ns/services/a')).json().metadata.name, 'a');
  assert.equal((await inject(app, '/api/v1/namespaces/ns/services/zz')).statusCode, 404);
  assert.equal((await inject(app, '/api/v1/services?continue=abc')).statusCode, 410);
  assert.equal((await inject(app, `/api/v1/services?resourceVersion=${clock.current}&resourceVersionMatch=Exact`)).statusCode, 200);
  assert.equal((await inject(app, `/api/v1/services?resourceVersion=${clock.current - 1}&resourceVersionMatch=Exact`)).statusCode, 410);
  await app.close();
});

test('refusals and discovery', async () => {
  const { app } = await setup();
  const r = await inject(app, { method: 'POST', url: '/api/v1/namespaces/ns/services', payload: {} });
  assert.equal(r.statusCode, 403);
  assert.equal(r.json().reason, 'Forbidden');
  assert.equal((await inject(app, '/api/v1/pods')).statusCode, 403);
  assert.equal((await inject(app, '/api/v1/services?labelSelector=a%20in')).statusCode, 400);
  const disc = (await inject(app, '/apis/discovery.k8s.io/v1')).json();
  assert.deepEqual(
    disc.resources.map((x: { name: string }) => x.name),
    ['endpointslices'],
  );
  assert.ok(
    (await inject(app, '/api/v1'))
      .json()
      .resources.some((x: { name: string; verbs: string[] }) => x.name === 'events' && x.verbs.includes('create')),
  );
  await app.close();
});

test('not synced: 503 Status and /readyz 503', async () => {
  const { app } = await setup(false);
  const r = await inject(app, '/api/v1/services');
  assert.equal(r.statusCode, 503);
  assert.equal(r.json().kind, 'Status');
  assert.equal((await inject(app, '/readyz')).statusCode, 503);
  assert.equal((await inject(app, '/healthz')).statusCode, 200);
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
  const body = (await inject(app, '/metrics')).body;
  const value = (name: string) => Number(new RegExp(`^${name} (\\d+(?:\\.\\d+)?)$`, 'm').exec(body)?.[1] ?? Number.NaN);
  assert.ok(value('process_resident_memory_bytes') > 10 * 1024 * 1024, 'RSS in bytes');
  assert.ok(value('nodejs_heap_size_used_bytes') > 1024 * 1024, 'heap used in bytes');
  assert.ok(value('nodejs_heap_size_total_bytes') >= value('nodejs_heap_size_used_bytes'));
  assert.match(body, /^# TYPE process_cpu_seconds_total counter$/m);
  assert.match(body, /^nodejs_heap_space_size_used_bytes\{space="old"\} \d+$/m);
  assert.match(body, /^servicegroup_wrapper_objects\{resource="services"\} 3$/m);
  await app.close();
});

/** Bytes sent as they are on a new connection; resolves with everything the server answered before closing. */
async function rawExchange(app: WrapperServer, bytes: string): Promise<string> {
  if (!app.server.listening) await app.listen({ host: '127.0.0.1', port: 0 });
  const socket = connect((app.server.address() as AddressInfo).port, '127.0.0.1');
  socket.setEncoding('utf8');
  let text = '';
  socket.on('data', (d) => (text += d));
  socket.write(bytes);
  await once(socket, 'close');
  return text;
}

const eventBody = (name: string) => ({
  apiVersion: 'v1',
  kind: 'Event',
  metadata: { name, namespace: 'ns' },
  involvedObject: { kind: 'Node', name: 'n1' },
  reason: 'Test',
});

test('HEAD is answered as GET without a body', async () => {
  const { app } = await setup();
  const health = await inject(app, { method: 'HEAD', url: '/healthz' });
  assert.equal(health.statusCode, 200);
  assert.equal(health.headers['content-length'], '2');
  assert.equal(health.body, '');
  const list = await inject(app, { method: 'HEAD', url: '/api/v1/services' });
  assert.equal(list.statusCode, 200);
  assert.match(String(list.headers['content-type']), /^application\/json/);
  assert.equal(list.body, '');
  const watch = await inject(app, { method: 'HEAD', url: '/api/v1/services?watch=1' });
  assert.equal(watch.statusCode, 200, 'a HEAD of a watch ends after the headers');
  assert.equal(watch.body, '');
  await app.close();
});

test('refusals as Kubernetes Status: wrong method, bad path encoding, oversized headers, malformed requests', async () => {
  const { app, served } = await setup();
  const put = await inject(app, { method: 'PUT', url: '/api/v1/namespaces/ns/services/a', payload: {} });
  assert.equal(put.statusCode, 403, 'the resource API lends no other verb the wrapper credentials');
  assert.equal(put.json().reason, 'Forbidden');
  const badPath = await inject(app, '/api/v1/namespaces/ns/services/%E0%A4%A');
  assert.equal(badPath.statusCode, 400);
  assert.equal(badPath.json().kind, 'Status');
  assert.match(badPath.json().message, /malformed percent-encoding/);
  served.services!.apply('ns/a.b', { metadata: { name: 'a.b', namespace: 'ns' } });
  assert.equal((await inject(app, '/api/v1/namespaces/ns/services/a%2Eb')).json().metadata.name, 'a.b', 'parameters are decoded');
  assert.equal((await inject(app, '/api/v1/services/')).statusCode, 403, 'an empty name is no route');
  const tooLarge = await rawExchange(app, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`);
  assert.match(tooLarge, /^HTTP\/1\.1 431 /);
  assert.equal(JSON.parse(tooLarge.slice(tooLarge.indexOf('\r\n\r\n') + 4)).reason, 'RequestHeaderFieldsTooLarge');
  const malformed = await rawExchange(app, 'GET /healthz HTTP/1.1\r\nHost x\r\n\r\n');
  assert.match(malformed, /^HTTP\/1\.1 400 /);
  assert.equal(JSON.parse(malformed.slice(malformed.indexOf('\r\n\r\n') + 4)).kind, 'Status');
  await app.close();
});

test('event writes: bad JSON and oversized bodies are refused before forwarding; an unreachable apiserver is 502', async () => {
  const { app } = await setup();
  const badJson = await inject(app, {
    method: 'POST',
    url: '/api/v1/namespaces/ns/events',
    headers: { 'content-type': 'application/json' },
    payload: undefined,
  });
  assert.equal(badJson.statusCode, 400, 'an empty body is no Event');
  const port = (app.server.address() as AddressInfo).port;
  const post = (body: string | Buffer) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port, method: 'POST', path: '/api/v1/namespaces/ns/events', headers: { 'content-type': 'application/json' } },
        (res) => {
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode!, body: text }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const notJson = await post('{"kind": "Event",');
  assert.equal(notJson.status, 400);
  assert.equal(JSON.parse(notJson.body).reason, 'BadRequest');
  const huge = await post(Buffer.alloc(1024 * 1024 + 1, ' '));
  assert.equal(huge.status, 413);
  assert.equal(JSON.parse(huge.body).reason, 'RequestEntityTooLarge');
  // The test's upstream is a closed port: a valid write is forwarded and the failure answered.
  const unreachable = await post(JSON.stringify(eventBody('e1')));
  assert.equal(unreachable.status, 502);
  assert.equal(JSON.parse(unreachable.body).reason, 'BadGateway');
  await app.close();
});

test('the health and metrics server: unknown paths 404, other methods 405, as Status', async () => {
  const { app: resources, state } = await setup();
  await resources.close();
  const app = buildServer(state, { withResources: false });
  assert.equal((await inject(app, '/metrics')).statusCode, 200);
  const unknown = await inject(app, '/api/v1/services');
  assert.equal(unknown.statusCode, 404);
  assert.equal(unknown.json().reason, 'NotFound');
  const post = await inject(app, { method: 'POST', url: '/readyz', payload: {} });
  assert.equal(post.statusCode, 405);
  assert.equal(post.headers.allow, 'GET, HEAD');
  assert.equal(post.json().reason, 'MethodNotAllowed');
  await app.close();
});

test('a large list is written whole with its length, and a client leaving mid-list leaves the server serving', async () => {
  const { app, served } = await setup();
  for (let i = 0; i < 3000; i++) {
    served.services!.apply(`big/s${i}`, { metadata: { name: `s${i}`, namespace: 'big', labels: { pad: 'x'.repeat(60) } }, spec: {} });
  }
  const whole = await inject(app, '/api/v1/namespaces/big/services');
  assert.equal(whole.statusCode, 200);
  assert.equal(Number(whole.headers['content-length']), Buffer.byteLength(whole.body));
  assert.equal(whole.json().items.length, 3000);
  const port = (app.server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => {
    get(`http://127.0.0.1:${port}/api/v1/services`, (res) => {
      res.once('data', () => {
        res.destroy();
        resolve();
      });
    });
  });
  assert.equal((await inject(app, '/api/v1/services')).json().items.length, 3003);
  await app.close();
});
