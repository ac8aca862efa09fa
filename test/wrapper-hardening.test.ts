// The application-grid-wrapper's hardening against a real apiserver: event writes that cannot be
// steered elsewhere, the Table form kubectl prints (compared with the apiserver's own), and a
// bounded number of watches whose resources are released when they close.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ANNOTATION_TOPOLOGY_KEYS } from '../controllers/api/v1alpha1.ts';
import { type Cluster, useCluster } from './cluster/cluster.ts';
import { waitFor } from './cluster/processes.ts';
import {
  httpText,
  installWrapperRbac,
  RawWatch,
  type RunningWrapper,
  startWrapper,
  WRAPPER_NAMESPACE,
  WRAPPER_SA,
} from './wrapper-harness.ts';

const cluster = useCluster({});
const ns = 'hard';
const LOCAL = 'ha1';
const MAX_WATCHES = 6;
const SA_USER = `system:serviceaccount:${WRAPPER_NAMESPACE}:${WRAPPER_SA}`;
const TABLE_V1 = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json';
const TABLE_V1BETA1 = 'application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json';

// biome-ignore lint/suspicious/noExplicitAny: Tables and Statuses read as plain JSON
type Json = any;

/** A request to the apiserver as admin. */
function apiserver(
  c: Cluster,
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const u = new URL(path, c.server);
    const req = httpsRequest(
      { host: u.hostname, port: u.port, path: u.pathname + u.search, method: init.method ?? 'GET', headers: init.headers, ...c.adminTLS },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      },
    );
    req.on('error', reject);
    req.end(init.body);
  });
}

/**
 * A request to the wrapper with the path sent exactly as written: a URL string would be
 * normalised by the client first (`%2E%2E` taken for `..`), as an attacker's client would not.
 */
function rawRequest(
  w: RunningWrapper,
  method: string,
  path: string,
  body: string | Buffer,
  contentType: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: w.port, method, path, headers: { 'Content-Type': contentType } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const node = (name: string, labels: Record<string, string>) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name, labels } });
const service = (name: string, spec: object, annotations: Record<string, string> = {}) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: ns, annotations },
  spec,
});
const slice = (name: string, svc: string, eps: [string, string][], ports: object[] = [{ name: 'http', port: 8080, protocol: 'TCP' }]) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': svc } },
  addressType: 'IPv4',
  ports,
  endpoints: eps.map(([ip, nodeName]) => ({ addresses: [ip], nodeName, conditions: { ready: true } })),
});
const zoneKeyed = { [ANNOTATION_TOPOLOGY_KEYS]: '["zone"]' };

const watcherCount = async (w: RunningWrapper) => {
  const body = (await httpText(`${w.url}/metrics`)).body;
  return [...body.matchAll(/^servicegroup_wrapper_watchers\{[^}]*\} (\S+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
};

describe('application-grid-wrapper hardening', () => {
  let wrapper: RunningWrapper;
  let clientKubeconfig: string;

  before(async () => {
    const c = cluster();
    const sa = await installWrapperRbac(c);
    await c.apply([
      node(LOCAL, { zone: 'a', 'node-role.kubernetes.io/edge': '' }),
      node('ha2', { zone: 'a', 'kubernetes.io/role': 'worker' }),
      node('hb1', { zone: 'b' }),
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } },
      service('web', { selector: { app: 'web', tier: 'front' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }, zoneKeyed),
      service('np', { type: 'NodePort', ports: [{ port: 81, protocol: 'UDP' }], externalIPs: ['192.0.2.7'] }),
      service('lb', {
        type: 'LoadBalancer',
        ports: [
          { name: 'https', port: 443 },
          { name: 'alt', port: 8443 },
        ],
      }),
      service('headless', { clusterIP: 'None', ports: [{ port: 53, protocol: 'UDP' }] }),
      service('ext', { type: 'ExternalName', externalName: 'db.example.com' }),
      slice('web-a', 'web', [
        ['10.7.0.1', LOCAL],
        ['10.7.0.2', 'ha2'],
        ['10.7.0.3', 'hb1'],
        ['10.7.0.4', 'hb1'],
        ['10.7.0.5', 'hb1'],
      ]),
      slice(
        'np-a',
        'np',
        [
          ['10.8.0.1', LOCAL],
          ['10.8.0.2', 'hb1'],
          ['10.8.0.3', 'hb1'],
          ['10.8.0.4', 'ha2'],
        ],
        [
          { port: 81, protocol: 'UDP' },
          { name: 'b', port: 82 },
          { name: 'c', port: 83 },
          { name: 'd', port: 84 },
        ],
      ),
      slice('lb-empty', 'lb', [], []),
      {
        apiVersion: 'v1',
        kind: 'Endpoints',
        metadata: { name: 'np', namespace: ns },
        subsets: [
          {
            addresses: [
              { ip: '10.8.0.1', nodeName: LOCAL },
              { ip: '10.8.0.2', nodeName: 'hb1' },
            ],
            ports: [{ port: 81, protocol: 'UDP' }],
          },
        ],
      },
    ]);
    // What a kubelet reports, so the node columns have something to print.
    const status = {
      status: {
        conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'ready' }],
        addresses: [
          { type: 'InternalIP', address: '192.168.7.1' },
          { type: 'ExternalIP', address: '203.0.113.1' },
        ],
        nodeInfo: {
          kubeletVersion: 'v1.35.4',
          osImage: 'Debian GNU/Linux 13',
          kernelVersion: '6.12.0',
          containerRuntimeVersion: 'containerd://2.1.0',
          machineID: '',
          systemUUID: '',
          bootID: '',
          kubeProxyVersion: '',
          operatingSystem: 'linux',
          architecture: 'amd64',
        },
      },
    };
    const r = await c.kubectl(['patch', 'node', LOCAL, '--subresource=status', '--type=merge', '-p', JSON.stringify(status)]);
    assert.equal(r.code, 0, r.stderr);
    const cordon = await c.kubectl(['cordon', 'ha2']);
    assert.equal(cordon.code, 0, cordon.stderr);
    wrapper = await startWrapper(c, { nodeName: LOCAL, kubeconfig: sa, args: [`--max-watches=${MAX_WATCHES}`] });
    clientKubeconfig = await c.kubeconfigForURL(wrapper.url, 'wrapper');
  });

  after(async () => {
    await wrapper?.stop();
  });

  describe('event writes', () => {
    const event = (name: string, namespace: string) => ({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name, namespace },
      involvedObject: { kind: 'Node', name: LOCAL },
      reason: 'Starting',
      message: 'kube-proxy started',
      type: 'Normal',
      source: { component: 'kube-proxy', host: LOCAL },
      count: 1,
      firstTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      lastTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    });
    const post = (path: string, body: unknown, contentType = 'application/json') =>
      rawRequest(wrapper, 'POST', path, Buffer.isBuffer(body) ? body : JSON.stringify(body), contentType);

    test('encoded paths, bad names and foreign bodies are refused at the wrapper (400 Status), never forwarded', async () => {
      const before = (await cluster().writeRequests(SA_USER)).length;
      const refused: [string, string, unknown, RegExp][] = [
        [
          'POST',
          '/api/v1/namespaces/..%2F..%2Fapi%2Fv1%2Fnamespaces%2Fdefault%2Fpods%23/events',
          { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' } },
          /invalid namespace "\.\.\/\.\.\/api\/v1\/namespaces\/default\/pods#"/,
        ],
        ['POST', '/apis/events.k8s.io/v1/namespaces/%2E%2E/events', event('e', 'default'), /invalid namespace "\.\."/],
        ['PATCH', '/api/v1/namespaces/default/events/..%2F..%2Fpods%2Fx', { count: 2 }, /invalid event name "\.\.\/\.\.\/pods\/x"/],
        ['PATCH', '/api/v1/namespaces/default/events/a%3Fdry', { count: 2 }, /invalid event name "a\?dry"/],
        ['POST', '/api/v1/namespaces/default/events', { ...event('e', 'kube-system') }, /metadata.namespace "kube-system" does not match/],
        ['POST', '/api/v1/namespaces/default/events', { ...event('e', 'default'), kind: 'Secret' }, /kind must be "Event"/],
        ['POST', '/api/v1/namespaces/default/events?dryRun=All&watch=true', event('e', 'default'), /"watch" is not accepted/],
      ];
      for (const [method, path, body, message] of refused) {
        const r = await rawRequest(
          wrapper,
          method,
          path,
          JSON.stringify(body),
          method === 'PATCH' ? 'application/merge-patch+json' : 'application/json',
        );
        assert.equal(r.status, 400, `${method} ${path}: ${r.body}`);
        const st = JSON.parse(r.body);
        assert.equal(st.kind, 'Status');
        assert.equal(st.reason, 'BadRequest');
        assert.match(st.message, message, `${method} ${path}`);
      }
      await new Promise((r) => setTimeout(r, 1000)); // the audit log is written asynchronously
      const after = await cluster().writeRequests(SA_USER);
      assert.deepEqual(after.slice(before), [], 'nothing reached the apiserver');
    });

    test('a valid event is still forwarded and created (JSON create and patch, protobuf create)', async () => {
      const created = await post('/api/v1/namespaces/default/events', event('hard-start', 'default'));
      assert.equal(created.status, 201, created.body);
      const patched = await httpText(`${wrapper.url}/api/v1/namespaces/default/events/hard-start`, {
        method: 'PATCH',
        body: JSON.stringify({ count: 2 }),
        headers: { 'Content-Type': 'application/strategic-merge-patch+json' },
      });
      assert.equal(patched.status, 200, patched.body);
      const stored = JSON.parse((await apiserver(cluster(), '/api/v1/namespaces/default/events/hard-start')).body.toString());
      assert.equal(stored.count, 2);

      // kube-proxy posts protobuf: the apiserver's own encoding of a new event (from a dry run)
      // is checked (its namespace read from the bytes), then forwarded and created.
      const proto = await apiserver(cluster(), '/api/v1/namespaces/default/events?dryRun=All', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/vnd.kubernetes.protobuf' },
        body: JSON.stringify(event('hard-proto', 'default')),
      });
      assert.equal(proto.status, 201, proto.body.toString());
      assert.equal(proto.body.subarray(0, 4).toString('latin1'), 'k8s\0', 'a protobuf body');
      const wrongNs = await post('/api/v1/namespaces/kube-system/events', proto.body, 'application/vnd.kubernetes.protobuf');
      assert.equal(wrongNs.status, 400, wrongNs.body);
      assert.match(JSON.parse(wrongNs.body).message, /metadata.namespace "default" does not match/);
      const viaProto = await post('/api/v1/namespaces/default/events', proto.body, 'application/vnd.kubernetes.protobuf');
      assert.equal(viaProto.status, 201, viaProto.body);
      assert.equal((await apiserver(cluster(), '/api/v1/namespaces/default/events/hard-proto')).status, 200);
    });
  });

  describe('kubectl get through the wrapper', () => {
    const resources: [string, string][] = [
      ['services', `/api/v1/namespaces/${ns}/services`],
      ['endpointslices', `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`],
      ['endpoints', `/api/v1/namespaces/${ns}/endpoints`],
      ['nodes', '/api/v1/nodes'],
      ['servicecidrs', '/apis/networking.k8s.io/v1/servicecidrs'],
      ['namespaces', '/api/v1/namespaces'],
    ];
    const ageIndex = (t: Json) => t.columnDefinitions.findIndex((c: { name: string }) => c.name === 'Age');
    /** Rows by name, the age cell blanked (the two servers read the clock at different times). */
    const rowsByName = (t: Json) =>
      new Map<string, string[]>(t.rows.map((r: { cells: string[] }) => [r.cells[0], r.cells.map((c, i) => (i === ageIndex(t) ? '' : c))]));

    test('Table: the apiserver columns and cells for every served kind; filtered endpoints where the node filters', async () => {
      for (const [resource, path] of resources) {
        for (const accept of [TABLE_V1, TABLE_V1BETA1]) {
          const fromApi: Json = JSON.parse((await apiserver(cluster(), path, { headers: { Accept: accept } })).body.toString());
          const r = await httpText(`${wrapper.url}${path}`, { headers: { Accept: accept } });
          assert.equal(r.status, 200, r.body);
          const fromWrapper: Json = JSON.parse(r.body);
          assert.equal(fromWrapper.kind, 'Table');
          assert.equal(fromWrapper.apiVersion, fromApi.apiVersion, `${resource} ${accept}`);
          assert.deepEqual(fromWrapper.columnDefinitions, fromApi.columnDefinitions, resource);
          assert.match(fromWrapper.metadata.resourceVersion, /^\d+$/);
          const api = rowsByName(fromApi);
          const ours = rowsByName(fromWrapper);
          assert.deepEqual([...ours.keys()].sort(), [...api.keys()].sort(), resource);
          for (const [name, cells] of ours) {
            if (resource === 'endpointslices' && name !== 'lb-empty') continue; // filtered below
            if (resource === 'endpoints' && name === 'np') continue;
            assert.deepEqual(cells, api.get(name), `${resource}/${name}`);
          }
          for (const row of fromWrapper.rows) assert.match(row.cells[ageIndex(fromWrapper)], /^\d+(s|m\d*s?)$/);
        }
      }
      const slices = rowsByName(JSON.parse((await httpText(`${wrapper.url}${resources[1]![1]}`, { headers: { Accept: TABLE_V1 } })).body));
      assert.deepEqual(slices.get('web-a'), ['web-a', 'IPv4', '8080', '10.7.0.1,10.7.0.2', ''], "only zone a's endpoints");
      assert.deepEqual(slices.get('np-a'), ['np-a', 'IPv4', '81,82,83 + 1 more...', '10.8.0.1,10.8.0.2,10.8.0.3 + 1 more...', '']);
      const eps = rowsByName(JSON.parse((await httpText(`${wrapper.url}${resources[2]![1]}`, { headers: { Accept: TABLE_V1 } })).body));
      assert.deepEqual(eps.get('np'), ['np', '10.8.0.1:81,10.8.0.2:81', ''], 'an unmarked Service keeps every endpoint');
    });

    test('Table: one object, includeObject Object/Metadata/None as the apiserver shapes rows, bad includeObject is 400', async () => {
      const path = `/api/v1/namespaces/${ns}/services/web`;
      for (const include of ['Object', 'Metadata', 'None']) {
        const q = `?includeObject=${include}`;
        const fromApi: Json = JSON.parse((await apiserver(cluster(), path + q, { headers: { Accept: TABLE_V1 } })).body.toString());
        const fromWrapper: Json = JSON.parse((await httpText(`${wrapper.url}${path}${q}`, { headers: { Accept: TABLE_V1 } })).body);
        assert.equal(fromWrapper.rows.length, 1);
        assert.deepEqual(Object.keys(fromWrapper.rows[0]).sort(), Object.keys(fromApi.rows[0]).sort(), include);
        if (include !== 'None') {
          assert.equal(fromWrapper.metadata.resourceVersion, fromWrapper.rows[0].object.metadata.resourceVersion, 'a get is at its object');
        }
        assert.equal(fromWrapper.rows[0].object?.kind, fromApi.rows[0].object?.kind, include);
        assert.equal(fromWrapper.rows[0].object?.apiVersion, fromApi.rows[0].object?.apiVersion, include);
        if (include !== 'None') assert.equal(fromWrapper.rows[0].object.metadata.name, 'web');
        if (include === 'Object') assert.deepEqual(fromWrapper.rows[0].object.spec.selector, { app: 'web', tier: 'front' });
      }
      const bad = await httpText(`${wrapper.url}${path}?includeObject=Everything`, { headers: { Accept: TABLE_V1 } });
      assert.equal(bad.status, 400);
      assert.match(JSON.parse(bad.body).message, /"includeObject": must be None, Metadata or Object/);
    });

    test('kubectl get -A -o wide prints the same headers as against the apiserver, rows of the filtered view', async () => {
      const c = cluster();
      for (const resource of ['endpointslices', 'services', 'nodes', 'endpoints', 'servicecidrs', 'namespaces']) {
        const viaApi = await c.kubectl(['get', resource, '-A', '-o', 'wide']);
        const viaWrapper = await c.kubectl(['get', resource, '-A', '-o', 'wide'], { kubeconfig: clientKubeconfig });
        assert.equal(viaWrapper.code, 0, viaWrapper.stderr);
        const header = (out: string) =>
          out
            .split('\n')[0]!
            .trim()
            .split(/\s{2,}/);
        assert.deepEqual(header(viaWrapper.stdout), header(viaApi.stdout), resource);
        const columns = header(viaWrapper.stdout).filter((h) => !['NAMESPACE', 'NAME', 'AGE'].includes(h));
        assert.ok(columns.length > 0, `${resource}: more than NAME and AGE: ${viaWrapper.stdout}`);
      }
      const out = (await c.kubectl(['get', 'endpointslices', '-A', '-o', 'wide'], { kubeconfig: clientKubeconfig })).stdout;
      const line = out.split('\n').find((l) => /\bweb-a\b/.test(l))!;
      assert.deepEqual(line.trim().split(/\s+/).slice(0, 5), [ns, 'web-a', 'IPv4', '8080', '10.7.0.1,10.7.0.2']);
      const nodes = (await c.kubectl(['get', 'nodes', '-o', 'wide'], { kubeconfig: clientKubeconfig })).stdout;
      const local = nodes.split('\n').find((l) => l.startsWith(`${LOCAL} `))!;
      assert.match(
        local,
        new RegExp(
          `^${LOCAL}\\s+Ready\\s+edge\\s+\\S+\\s+v1\\.35\\.4\\s+192\\.168\\.7\\.1\\s+203\\.0\\.113\\.1\\s+Debian GNU/Linux 13\\s+6\\.12\\.0\\s+containerd://2\\.1\\.0$`,
        ),
      );
      assert.match(nodes, /\nha2\s+Unknown,SchedulingDisabled\s+worker\s/);
    });

    test('kubectl get -w follows changes through the wrapper in the Table form', async () => {
      const c = cluster();
      const child = spawn(join(c.binDir, 'kubectl'), [`--kubeconfig=${clientKubeconfig}`, 'get', 'endpointslices', '-n', ns, '-w'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      try {
        await waitFor('the initial table', async () => (/\bweb-a\b/.test(out) ? true : undefined), { timeoutMs: 30_000 });
        assert.match(out.split('\n')[0]!, /^NAME\s+ADDRESSTYPE\s+PORTS\s+ENDPOINTS\s+AGE$/);
        await c.apply([
          slice('web-a', 'web', [
            ['10.7.0.1', LOCAL],
            ['10.7.0.9', 'ha2'],
            ['10.7.0.3', 'hb1'],
          ]),
        ]);
        await waitFor('the changed slice', async () => (/web-a\s+IPv4\s+8080\s+10\.7\.0\.1,10\.7\.0\.9\s/.test(out) ? true : undefined), {
          timeoutMs: 30_000,
        });
        assert.doesNotMatch(out, /10\.7\.0\.3/, 'zone b stays filtered');
        assert.equal(err, '');
      } finally {
        child.kill();
      }
    });
  });

  describe('watch limit', () => {
    test('past --max-watches a watch gets 429 TooManyRequests with Retry-After; closed watches are released', async () => {
      const base = `${wrapper.url}/apis/discovery.k8s.io/v1/endpointslices?watch=1&allowWatchBookmarks=true`;
      await waitFor('no watch open', async () => ((await watcherCount(wrapper)) === 0 ? true : undefined), { timeoutMs: 30_000 });
      const open: RawWatch[] = [];
      try {
        for (let i = 0; i < MAX_WATCHES; i++) {
          const w = new RawWatch(base);
          await w.ready;
          assert.equal(w.status, 200, `watch ${i + 1} of ${MAX_WATCHES}`);
          open.push(w);
        }
        assert.equal(await watcherCount(wrapper), MAX_WATCHES);
        const refused = await httpText(base);
        assert.equal(refused.status, 429);
        assert.equal(refused.headers['retry-after'], '1');
        const st = JSON.parse(refused.body);
        assert.equal(st.kind, 'Status');
        assert.equal(st.reason, 'TooManyRequests');
        assert.equal(st.details.retryAfterSeconds, 1);
        assert.match(st.message, new RegExp(`too many open watches \\(${MAX_WATCHES} of at most ${MAX_WATCHES}\\)`));
        // Lists and health checks are not watches: they are still served.
        assert.equal((await httpText(`${wrapper.url}/apis/discovery.k8s.io/v1/endpointslices`)).status, 200);
        assert.equal((await httpText(`${wrapper.url}/healthz`)).status, 200);
        const metrics = (await httpText(`${wrapper.url}/metrics`)).body;
        assert.match(metrics, /^servicegroup_wrapper_requests_refused_total\{reason="too_many_watches"\} 1$/m);
      } finally {
        for (const w of open) w.close();
      }
      await waitFor('every closed watch released', async () => ((await watcherCount(wrapper)) === 0 ? true : undefined), {
        timeoutMs: 30_000,
      });
      // Released means admitted again, up to the limit.
      const again: RawWatch[] = [];
      for (let i = 0; i < MAX_WATCHES; i++) {
        const w = new RawWatch(base);
        await w.ready;
        again.push(w);
      }
      assert.deepEqual(
        again.map((w) => w.status),
        Array(MAX_WATCHES).fill(200),
      );
      for (const w of again) w.close();
      await waitFor('released again', async () => ((await watcherCount(wrapper)) === 0 ? true : undefined), { timeoutMs: 30_000 });
    });

    test('--max-watches must be a whole number of at least 1', async () => {
      const c = cluster();
      for (const bad of ['0', '1.5']) {
        const child = spawn(process.execPath, [join(import.meta.dirname, '../wrapper/main.ts'), '--node-name=x', `--max-watches=${bad}`], {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, KUBECONFIG: c.adminKubeconfigPath },
        });
        let out = '';
        child.stderr.on('data', (d) => (out += d));
        const code = await new Promise<number | null>((r) => child.on('exit', r));
        assert.equal(code, 2, bad);
        assert.match(out, new RegExp(`invalid value "${bad.replace('.', '\\.')}" for --max-watches: `));
      }
    });
  });
});
