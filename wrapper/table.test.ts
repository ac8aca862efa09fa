import assert from 'node:assert/strict';
import { test } from 'node:test';
import { QueryError } from './query.ts';
import { ENDPOINT_SLICES, ENDPOINTS, SERVED_RESOURCES, SERVICES } from './resources.ts';
import { hasTablePrinter, humanDuration, includeObjectOf, renderTable, tableVersionOf } from './table.ts';

test('Accept: the Table form kubectl asks for, in order of preference; plain JSON otherwise', () => {
  const kubectl = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json';
  assert.equal(tableVersionOf(kubectl), 'meta.k8s.io/v1');
  assert.equal(tableVersionOf('application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json'), 'meta.k8s.io/v1beta1');
  assert.equal(tableVersionOf('application/json; as=Table; g=meta.k8s.io; v=v1'), 'meta.k8s.io/v1');
  assert.equal(tableVersionOf('application/json'), undefined);
  assert.equal(tableVersionOf('application/vnd.kubernetes.protobuf, */*'), undefined);
  assert.equal(tableVersionOf(undefined), undefined);
  assert.equal(tableVersionOf('application/json, application/json;as=Table;v=v1;g=meta.k8s.io'), undefined, 'plain JSON preferred');
  assert.equal(tableVersionOf('application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json'), undefined);
});

test('includeObject: None, Metadata (default) or Object', () => {
  assert.equal(includeObjectOf(new URLSearchParams('')), 'Metadata');
  assert.equal(includeObjectOf(new URLSearchParams('includeObject=Object')), 'Object');
  assert.throws(() => includeObjectOf(new URLSearchParams('includeObject=All')), QueryError);
});

test('ages print like the apiserver: coarser as they grow, with one finer unit while it matters', () => {
  const s = 1000;
  const m = 60 * s;
  const h = 60 * m;
  const d = 24 * h;
  assert.equal(humanDuration(-5 * s), '<invalid>');
  assert.equal(humanDuration(-1 * s), '0s');
  assert.equal(humanDuration(119 * s), '119s');
  assert.equal(humanDuration(2 * m), '2m');
  assert.equal(humanDuration(9 * m + 5 * s), '9m5s');
  assert.equal(humanDuration(179 * m), '179m');
  assert.equal(humanDuration(3 * h + 15 * m), '3h15m');
  assert.equal(humanDuration(47 * h), '47h');
  assert.equal(humanDuration(3 * d + 4 * h), '3d4h');
  assert.equal(humanDuration(400 * d), '400d');
  assert.equal(humanDuration(3 * 365 * d + 10 * d), '3y10d');
  assert.equal(humanDuration(9 * 365 * d), '9y');
});

const opts = { version: 'meta.k8s.io/v1', includeObject: 'Metadata', withColumns: true, now: Date.parse('2026-01-01T00:10:00Z') } as const;
const meta = (name: string) => ({ name, namespace: 'ns', creationTimestamp: '2026-01-01T00:00:00Z' });
// biome-ignore lint/suspicious/noExplicitAny: tables read as plain JSON
const cells = (t: any) => t.rows.map((r: { cells: string[] }) => r.cells);

test('cells: long lists abbreviated, empty ones marked, IPv6 host:port bracketed', () => {
  const slices = renderTable(
    ENDPOINT_SLICES,
    [
      {
        metadata: meta('many'),
        addressType: 'IPv4',
        ports: [{ port: 80 }, { name: 'http' }, {}, { port: 8443 }],
        endpoints: [1, 2, 3, 4, 5].map((i) => ({ addresses: [`10.0.0.${i}`] })),
      },
      { metadata: meta('empty'), addressType: 'IPv4', ports: [], endpoints: null },
    ],
    '7',
    opts,
  );
  assert.deepEqual(cells(slices), [
    ['many', 'IPv4', '80,http,* + 1 more...', '10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...', '10m'],
    ['empty', 'IPv4', '<unset>', '<unset>', '10m'],
  ]);
  const eps = renderTable(
    ENDPOINTS,
    [
      { metadata: meta('v6'), subsets: [{ addresses: [{ ip: 'fd00::1' }], ports: [{ port: 80 }] }] },
      { metadata: meta('none') },
      { metadata: meta('headless'), subsets: [{ addresses: [{ ip: '10.0.0.1' }, { ip: '10.0.0.2' }] }] },
    ],
    '7',
    opts,
  );
  assert.deepEqual(cells(eps), [
    ['v6', '[fd00::1]:80', '10m'],
    ['none', '<none>', '10m'],
    ['headless', '10.0.0.1,10.0.0.2', '10m'],
  ]);
  const svcs = renderTable(
    SERVICES,
    [
      {
        metadata: meta('lb'),
        spec: {
          type: 'LoadBalancer',
          clusterIPs: ['10.96.0.9'],
          ports: [{ port: 80, nodePort: 30080, protocol: 'TCP' }],
          selector: { b: '2', a: '1' },
        },
        status: { loadBalancer: {} },
      },
    ],
    '7',
    opts,
  );
  assert.deepEqual(cells(svcs), [['lb', 'LoadBalancer', '10.96.0.9', '<pending>', '80:30080/TCP', '10m', 'a=1,b=2']]);
});

test('every served kind has a Table printer', () => {
  for (const spec of SERVED_RESOURCES) assert.ok(hasTablePrinter(spec.resource), spec.resource);
});
