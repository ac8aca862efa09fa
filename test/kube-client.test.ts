// The API client's request path against a real apiserver: plain requests share one HTTP/2
// connection, errors carry the apiserver's status, lists come from the watch cache or page by
// page, and a connection the apiserver ended is replaced by the next request.
import assert from 'node:assert/strict';
import dc from 'node:diagnostics_channel';
import { mkdtemp, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import pino from 'pino';
import { ApiError, isMetadataOnly, KubeClient, type StreamOptions } from '../kube/client.ts';
import { Informer } from '../kube/informer.ts';
import { loadKubeconfig } from '../kube/kubeconfig.ts';
import type { KubeObject } from '../kube/objects.ts';
import { useCluster } from './cluster/cluster.ts';
import { waitFor } from './cluster/processes.ts';

const cluster = useCluster({});

let connections = 0;
dc.subscribe('net.client.socket', () => connections++);

describe('KubeClient requests', () => {
  test('a burst of writes shares one connection; methods with and without a body; statuses', async () => {
    const client = new KubeClient(loadKubeconfig(cluster().adminKubeconfigPath));
    await client.post('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'burst' } });
    const before = connections;
    const names = Array.from({ length: 150 }, (_, i) => `cm-${i}`);
    await Promise.all(
      names.map((name) =>
        client.post('/api/v1/namespaces/burst/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { n: name } }),
      ),
    );
    assert.equal(connections - before, 0, '150 requests in flight at once went over the connection already open');
    const list = await client.get<{ items: { metadata: { name: string } }[] }>('/api/v1/namespaces/burst/configmaps');
    assert.deepEqual(list.items.map((c) => c.metadata.name).sort(), [...names].sort());
    // Query values are encoded ('=' and ',' inside a selector), undefined ones left out.
    const one = await client.request<{ items: { metadata: { name: string } }[] }>('GET', '/api/v1/namespaces/burst/configmaps', {
      query: { fieldSelector: 'metadata.name=cm-3,metadata.namespace=burst', limit: undefined },
    });
    assert.deepEqual(
      one.items.map((c) => c.metadata.name),
      ['cm-3'],
    );

    const patched = await client.mergePatch<{ data: Record<string, string> }>('/api/v1/namespaces/burst/configmaps/cm-0', {
      data: { x: 'y' },
    });
    assert.deepEqual(patched.data, { n: 'cm-0', x: 'y' });
    // A DELETE with a body: a precondition that does not hold is refused (409), one that holds deletes.
    const uid = (await client.get<{ metadata: { uid: string } }>('/api/v1/namespaces/burst/configmaps/cm-1')).metadata.uid;
    const wrong = await client.delete('/api/v1/namespaces/burst/configmaps/cm-1', { preconditions: { uid: 'not-it' } }).catch((e) => e);
    assert.ok(wrong instanceof ApiError && wrong.statusCode === 409, String(wrong));
    await client.delete('/api/v1/namespaces/burst/configmaps/cm-1', { preconditions: { uid } });
    const gone = await client.get('/api/v1/namespaces/burst/configmaps/cm-1').catch((e) => e);
    assert.ok(gone instanceof ApiError && gone.statusCode === 404 && gone.reason === 'NotFound', String(gone));
    const taken = await client
      .post('/api/v1/namespaces/burst/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cm-2' } })
      .catch((e) => e);
    assert.ok(taken instanceof ApiError && taken.statusCode === 409 && taken.reason === 'AlreadyExists', String(taken));
    client.close();
  });

  test('with HTTP/2 off, requests go over HTTP/1.1: each request in flight has a connection of its own', async () => {
    const client = new KubeClient(loadKubeconfig(cluster().adminKubeconfigPath), { http2: false });
    const before = connections;
    const answers = await Promise.all(Array.from({ length: 8 }, () => client.get<{ major: string }>('/version')));
    assert.ok(answers.every((v) => v.major === '1'));
    assert.ok(
      connections - before >= 2,
      `8 requests in flight opened ${connections - before} connections (one HTTP/2 connection would be 1)`,
    );
    const missing = await client.get('/api/v1/namespaces/none-such').catch((e) => e);
    assert.ok(missing instanceof ApiError && missing.statusCode === 404, String(missing));
  });

  test('a request is bounded by its deadline, and the connection serves the next one', async () => {
    const client = new KubeClient(loadKubeconfig(cluster().adminKubeconfigPath));
    const started = Date.now();
    // A watch's response never completes on its own within the deadline.
    const err = await client
      .request('GET', '/api/v1/namespaces', { query: { watch: 1, timeoutSeconds: 60 }, timeoutMs: 300 })
      .catch((e: Error) => e);
    assert.match(String(err), /no complete response within 300 ms/);
    assert.ok(Date.now() - started < 20_000, `rejected after ${Date.now() - started} ms`);
    assert.equal((await client.get<{ metadata: { name: string } }>('/api/v1/namespaces/default')).metadata.name, 'default');
    client.close();
  });

  test('answers of metadata only: the apiserver transforms creates, applies and status patches; none: nothing parsed, errors still carry their status', async () => {
    const client = new KubeClient(loadKubeconfig(cluster().adminKubeconfigPath));
    const path = '/apis/apps/v1/namespaces/default/deployments';
    const deployment = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'answers', namespace: 'default', labels: { app: 'answers' } },
      spec: {
        selector: { matchLabels: { app: 'answers' } },
        template: { metadata: { labels: { app: 'answers' } }, spec: { containers: [{ name: 'c', image: 'registry.invalid/c:1' }] } },
      },
    };
    type Answer = { kind: string; metadata: { uid?: string; resourceVersion?: string; managedFields?: unknown[] }; spec?: unknown };
    const metadataOnly = (a: Answer, what: string) => {
      assert.equal(a.kind, 'PartialObjectMetadata', what);
      assert.ok(isMetadataOnly(a), what);
      assert.ok(a.metadata.uid && a.metadata.resourceVersion && a.metadata.managedFields?.length, `${what}: ${JSON.stringify(a)}`);
      assert.equal(a.spec, undefined, what);
    };
    const created = await client.request<Answer>('POST', path, { query: { fieldManager: 'test' }, body: deployment, answer: 'metadata' });
    metadataOnly(created, 'create');
    const applied = await client.apply<Answer>(`${path}/answers`, deployment, 'test', true, 'metadata');
    metadataOnly(applied, 'apply');
    const status = await client.mergePatch<Answer>(`${path}/answers/status`, { status: { observedGeneration: 1 } }, 'test', 'metadata');
    metadataOnly(status, 'status patch');
    assert.ok(Number(status.metadata.resourceVersion) > Number(created.metadata.resourceVersion));
    const whole = await client.get<Answer>(`${path}/answers`);
    assert.equal(whole.kind, 'Deployment', 'the whole object by default');
    assert.equal(
      await client.request('POST', path, { body: { ...deployment, metadata: { name: 'answers-2' } }, answer: 'none' }),
      undefined,
    );
    const taken = await client.request('POST', path, { body: deployment, answer: 'none' }).catch((e) => e);
    assert.ok(taken instanceof ApiError && taken.statusCode === 409 && taken.reason === 'AlreadyExists', String(taken));
    assert.equal(await client.request('DELETE', `${path}/answers`, { answer: 'none' }), undefined);
    client.close();
  });

  test('a token file that changes is used: at once after a 401, within seconds otherwise', async () => {
    const c = cluster();
    const tokenOf = async (name: string) => {
      await c.kubectl(['create', 'serviceaccount', name, '-n', 'default']);
      const r = await c.kubectl(['create', 'token', name, '-n', 'default']);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim();
    };
    const [first, second] = [await tokenOf('rotating-a'), await tokenOf('rotating-b')];
    const dir = await mkdtemp(join(tmpdir(), 'token-file-'));
    const tokenFile = join(dir, 'token');
    const kubeconfig = join(dir, 'kubeconfig');
    await writeFile(tokenFile, 'not-a-token');
    await writeFile(
      kubeconfig,
      `current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: '${c.server}', certificate-authority-data: ${Buffer.from(c.adminTLS.ca).toString('base64')}}}]
users: [{name: u, user: {tokenFile: token}}]
`,
    );
    const client = new KubeClient(loadKubeconfig(kubeconfig));
    const whoAmI = async () =>
      (
        await client.post<{ status: { userInfo: { username: string } } }>('/apis/authentication.k8s.io/v1/selfsubjectreviews', {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'SelfSubjectReview',
        })
      ).status.userInfo.username;
    const refused = await whoAmI().catch((e) => e);
    assert.ok(refused instanceof ApiError && refused.statusCode === 401, String(refused));
    await writeFile(tokenFile, first);
    assert.equal(await whoAmI(), 'system:serviceaccount:default:rotating-a', 'the token is read again right after a 401');
    await writeFile(tokenFile, second);
    const deadline = Date.now() + 30_000;
    let user = await whoAmI();
    while (user !== 'system:serviceaccount:default:rotating-b' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      user = await whoAmI();
    }
    assert.equal(user, 'system:serviceaccount:default:rotating-b', 'a rotated token is picked up without a 401');
    client.close();
  });

  test('an informer lists from the watch cache (which answers in one body, whatever the limit), or page by page with pagedLists', async () => {
    const admin = new KubeClient(loadKubeconfig(cluster().adminKubeconfigPath));
    for (let i = 0; i < 5; i++)
      await admin.request('POST', '/api/v1/namespaces/default/configmaps', {
        body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `paged-${i}`, labels: { paged: 'yes' } } },
      });
    /** The list requests an informer sends, and how many objects each answer carried. */
    class Recording extends KubeClient {
      lists: { query: Record<string, unknown>; items: number }[] = [];
      override async stream(method: string, path: string, opts: StreamOptions): Promise<IncomingMessage> {
        const res = await super.stream(method, path, opts);
        if (opts.query?.watch) return res;
        const body: Buffer[] = [];
        for await (const c of res) body.push(c as Buffer);
        const text = Buffer.concat(body);
        this.lists.push({ query: { ...opts.query }, items: (JSON.parse(text.toString()) as { items: unknown[] }).items.length });
        const replay = new PassThrough();
        replay.end(text);
        return replay as unknown as IncomingMessage;
      }
    }
    const log = pino({ level: 'silent' });
    const CONFIGMAPS = { group: '', version: 'v1', resource: 'configmaps' };
    for (const pagedLists of [false, true]) {
      const client = new Recording(loadKubeconfig(cluster().adminKubeconfigPath));
      const cache = new Informer<KubeObject>(client, CONFIGMAPS, log, { labelSelector: 'paged=yes', pageSize: 2, pagedLists });
      cache.start();
      await cache.synced;
      assert.equal(cache.size, 5, `all five objects cached (pagedLists ${pagedLists})`);
      if (pagedLists) {
        assert.deepEqual(
          client.lists.map((l) => l.items),
          [2, 2, 1],
        );
        assert.equal(client.lists[0]!.query.resourceVersion, undefined, 'a consistent read, not the watch cache');
      } else {
        assert.deepEqual(
          client.lists.map((l) => [l.query.resourceVersion, l.items]),
          [['0', 5]],
          'the cache ignores the limit of 2',
        );
      }
      cache.stop();
      client.close();
    }
    admin.close();
  });

  test('an API this apiserver does not serve: with absentRecheckMs the cache syncs empty, fills once it is served, and empties when it goes', async () => {
    const admin = new KubeClient(loadKubeconfig(cluster().adminKubeconfigPath));
    const log = pino({ level: 'silent' });
    const WIDGETS = { group: 'absent.example.com', version: 'v1', resource: 'widgets' };
    const strict = new Informer<KubeObject>(admin, WIDGETS, log, { maxBackoffMs: 100 });
    const tolerant = new Informer<KubeObject>(admin, WIDGETS, log, { absentRecheckMs: 300 });
    const sized = (cache: Informer<KubeObject>, n: number, what: string) =>
      waitFor(what, async () => cache.size === n || undefined, { intervalMs: 100 });
    const crd = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';
    try {
      strict.start();
      tolerant.start();
      await tolerant.synced;
      assert.equal(tolerant.size, 0);
      const strictSynced = await Promise.race([strict.synced.then(() => true), new Promise((r) => setTimeout(() => r(false), 1_000))]);
      assert.equal(strictSynced, false, 'without the option a 404 is a failure: the cache never syncs');
      assert.equal(strict.failing, true);

      await admin.request('POST', crd, {
        body: {
          apiVersion: 'apiextensions.k8s.io/v1',
          kind: 'CustomResourceDefinition',
          metadata: { name: 'widgets.absent.example.com' },
          spec: {
            group: 'absent.example.com',
            scope: 'Cluster',
            names: { plural: 'widgets', singular: 'widget', kind: 'Widget' },
            versions: [
              {
                name: 'v1',
                served: true,
                storage: true,
                schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
              },
            ],
          },
        },
      });
      // The CRD is established within moments; until then the create is refused.
      await waitFor('the widget created', () =>
        admin
          .request('POST', '/apis/absent.example.com/v1/widgets', {
            body: { apiVersion: 'absent.example.com/v1', kind: 'Widget', metadata: { name: 'w1' } },
          })
          .then(
            () => true,
            () => undefined,
          ),
      );
      await sized(tolerant, 1, 'the widget once the API is served');
      await sized(strict, 1, 'the widget, in the cache that retried');
      await admin.request('DELETE', `${crd}/widgets.absent.example.com`);
      await sized(tolerant, 0, 'the API went');
    } finally {
      strict.stop();
      tolerant.stop();
      await admin.request('DELETE', `${crd}/widgets.absent.example.com`).catch(() => undefined);
      admin.close();
    }
  });

  test('after the apiserver restarts, the next request opens a new connection', async () => {
    const client = new KubeClient(loadKubeconfig(cluster().adminKubeconfigPath));
    await client.get('/api/v1/namespaces/default');
    const before = connections;
    await cluster().restartApiserver();
    const ns = await client.get<{ metadata: { name: string } }>('/api/v1/namespaces/default');
    assert.equal(ns.metadata.name, 'default');
    assert.ok(connections > before, 'a new connection');
    client.close();
  });
});
