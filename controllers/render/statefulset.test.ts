import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { V1StatefulSetSpec } from '@kubernetes/client-node';
import { ANNOTATION_RENDER_HASH, LABEL_GRID, LABEL_UNIT, REASON_INVALID_OVERRIDE, type StatefulSetGrid } from '../api/v1alpha1.ts';
import { MAX_STATEFULSET_GRID_NAME, MAX_STATEFULSET_NAME, unitStatefulSetName } from './names.ts';
import { changedImmutableFields, renderStatefulSetGrid } from './statefulset.ts';

const template = (image: string): V1StatefulSetSpec => ({
  replicas: 1,
  serviceName: 'mysql-svc',
  selector: { matchLabels: { app: 'mysql' } },
  template: { metadata: { labels: { app: 'mysql' } }, spec: { containers: [{ name: 'mysql', image }] } },
  volumeClaimTemplates: [
    { metadata: { name: 'data' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } },
  ],
});

const stsg = (spec: Partial<StatefulSetGrid['spec']> = {}, name = 'mysql'): StatefulSetGrid => ({
  apiVersion: 'servicegroup.io/v1alpha1',
  kind: 'StatefulSetGrid',
  metadata: { name, namespace: 'shop', uid: 'uid-1' },
  spec: { gridUniqKey: 'zone', template: template('mysql:8.4'), ...spec },
});

test('one StatefulSet per unit, pinned and labelled, keeping serviceName and volumeClaimTemplates', () => {
  const out = renderStatefulSetGrid(stsg(), ['b', 'a']);
  assert.deepEqual(
    out.map((r) => r.name),
    ['mysql-a', 'mysql-b'],
  );
  const a = out[0]!.object!;
  assert.equal(a.kind, 'StatefulSet');
  assert.equal(a.apiVersion, 'apps/v1');
  assert.equal(a.metadata?.namespace, 'shop');
  assert.equal(a.metadata?.labels?.[LABEL_UNIT], 'a');
  assert.equal(a.metadata?.ownerReferences?.[0]?.kind, 'StatefulSetGrid');
  assert.ok(a.metadata?.annotations?.[ANNOTATION_RENDER_HASH]);
  assert.equal(a.spec?.serviceName, 'mysql-svc');
  assert.deepEqual(a.spec?.selector.matchLabels, { app: 'mysql', [LABEL_GRID]: 'mysql', [LABEL_UNIT]: 'a' });
  assert.deepEqual(a.spec?.template.metadata?.labels, { app: 'mysql', [LABEL_GRID]: 'mysql', [LABEL_UNIT]: 'a' });
  assert.deepEqual(a.spec?.template.spec?.nodeSelector, { zone: 'a' });
  assert.equal(a.spec?.volumeClaimTemplates?.[0]?.metadata?.name, 'data');
});

test('templatePool, templates, defaultTemplateName and overrides as in a DeploymentGrid', () => {
  const out = renderStatefulSetGrid(
    stsg({
      templatePool: { canary: template('mysql:9.0') },
      templates: { b: 'canary' },
      overrides: [
        { units: ['a'], replicas: 3 },
        { units: ['c'], patch: [{ op: 'remove', path: '/template' }] },
      ],
    }),
    ['a', 'b', 'c'],
  );
  const [a, b, c] = out;
  assert.equal(a!.object?.spec?.replicas, 3);
  assert.equal(a!.template, 'default');
  assert.equal(b!.template, 'canary');
  assert.equal(b!.object?.spec?.template.spec?.containers[0]?.image, 'mysql:9.0');
  assert.equal(c!.error?.reason, REASON_INVALID_OVERRIDE);
  assert.equal(c!.object, undefined);
});

test('names: pod names and the controller-revision-hash label stay within limits for the longest grid name', () => {
  const grid = 'g'.repeat(MAX_STATEFULSET_GRID_NAME);
  const name = unitStatefulSetName(grid, 'a-unit-value-that-is-far-too-long-for-the-name-budget-0123456789');
  assert.ok(name.length <= MAX_STATEFULSET_NAME, name);
  assert.ok(`${name}-9999`.length <= 63);
  const [r] = renderStatefulSetGrid(stsg({}, grid), ['Zone_A']);
  assert.ok(r!.name.startsWith(`${grid}-`));
  assert.ok(r!.name.length <= MAX_STATEFULSET_NAME);
});

test('changedImmutableFields: what a StatefulSet cannot take in place, ignoring what the apiserver defaults', () => {
  const [r] = renderStatefulSetGrid(stsg(), ['a']);
  const desired = r!.object! as unknown as { spec: Record<string, unknown> };
  const live = structuredClone(desired);
  live.spec.podManagementPolicy = 'OrderedReady';
  (live.spec.volumeClaimTemplates as Record<string, unknown>[])[0]!.status = { phase: 'Pending' };
  (live.spec.volumeClaimTemplates as { spec: Record<string, unknown> }[])[0]!.spec.volumeMode = 'Filesystem';
  live.spec.replicas = 5;
  assert.deepEqual(changedImmutableFields(live, desired), [], 'defaults and mutable fields are not changes');
  const [changed] = renderStatefulSetGrid(
    stsg({ template: { ...template('mysql:8.4'), serviceName: 'other-svc', podManagementPolicy: 'Parallel' } }),
    ['a'],
  );
  assert.deepEqual(changedImmutableFields(live, changed!.object! as unknown as { spec: Record<string, unknown> }), [
    'serviceName',
    'podManagementPolicy',
  ]);
});
