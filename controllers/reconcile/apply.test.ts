import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FIELD_MANAGER, mergeFieldSets, upgradedManagedFields } from './apply.ts';

test('field sets merge as a deep union', () => {
  assert.deepEqual(mergeFieldSets({ 'f:data': { 'f:a': {} } }, { 'f:data': { '.': {}, 'f:b': {} }, 'f:metadata': {} }), {
    'f:data': { 'f:a': {}, '.': {}, 'f:b': {} },
    'f:metadata': {},
  });
});

test("a create's Update entry of our manager is merged into its Apply entry; other entries stay", () => {
  const status = { manager: 'kube-controller-manager', operation: 'Update', subresource: 'status', fieldsV1: { 'f:status': {} } };
  const other = { manager: 'kubectl', operation: 'Update', fieldsV1: { 'f:metadata': { 'f:labels': { 'f:x': {} } } } };
  const created = { manager: FIELD_MANAGER, operation: 'Update', time: 't1', fieldsV1: { 'f:spec': { 'f:a': {}, 'f:b': {} } } };
  assert.deepEqual(upgradedManagedFields([created, status, other]), [
    status,
    other,
    { manager: FIELD_MANAGER, operation: 'Apply', time: 't1', fieldsV1: { 'f:spec': { 'f:a': {}, 'f:b': {} } } },
  ]);
  const applied = { manager: FIELD_MANAGER, operation: 'Apply', time: 't2', fieldsV1: { 'f:spec': { 'f:a': {}, 'f:c': {} } } };
  assert.deepEqual(upgradedManagedFields([created, applied]), [
    { manager: FIELD_MANAGER, operation: 'Apply', time: 't2', fieldsV1: { 'f:spec': { 'f:a': {}, 'f:c': {}, 'f:b': {} } } },
  ]);
  assert.equal(upgradedManagedFields([applied, status]), undefined, 'nothing to upgrade');
  assert.equal(upgradedManagedFields(undefined), undefined);
});
