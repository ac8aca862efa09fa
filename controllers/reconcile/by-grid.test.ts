import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { KubeClient } from '../../kube/client.ts';
import { Informer } from '../../kube/informer.ts';
import type { KubeObject } from '../../kube/objects.ts';
import { ObjectsByGrid } from './by-grid.ts';

const object = (namespace: string, name: string, grid?: string, resourceVersion = '1'): KubeObject => ({
  metadata: { namespace, name, resourceVersion, labels: grid === undefined ? {} : { 'servicegroup.io/grid': grid } },
});

test('follows the grid label of cached objects through adds, relabels and deletes', () => {
  // A cache that is never started: the test delivers what its watch would.
  const client = new KubeClient({ server: 'https://127.0.0.1:1', applyToHTTPSOptions: async () => {} });
  const cache = new Informer<KubeObject>(client, { group: 'apps', version: 'v1', resource: 'deployments' }, pino({ level: 'silent' }));
  const byGrid = new ObjectsByGrid(cache);
  cache.upsert('deployments', object('a', 'web-z1', 'web'));
  cache.upsert('deployments', object('a', 'web-z2', 'web'));
  cache.upsert('deployments', object('b', 'web-z1', 'web'));
  cache.upsert('deployments', object('a', 'db-z1', 'db'));
  assert.deepEqual(byGrid.of('a', 'web').sort(), ['web-z1', 'web-z2']);
  assert.deepEqual(byGrid.of('b', 'web'), ['web-z1'], 'namespaces apart');
  cache.upsert('deployments', object('a', 'web-z2', 'db', '2'));
  assert.deepEqual(byGrid.of('a', 'web'), ['web-z1'], 'relabelled to another grid');
  assert.deepEqual(byGrid.of('a', 'db').sort(), ['db-z1', 'web-z2']);
  cache.upsert('deployments', object('a', 'db-z1', undefined, '2'));
  assert.deepEqual(byGrid.of('a', 'db'), ['web-z2'], 'label removed');
  cache.delete('deployments', object('a', 'web-z1', 'web', '2'));
  assert.deepEqual(byGrid.of('a', 'web'), []);
});
