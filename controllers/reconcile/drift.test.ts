import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { covers, DriftDetector } from './drift.ts';

describe('covers', () => {
  it('accepts extra live fields and defaulted values', () => {
    assert.ok(covers({ a: 1, b: { c: 'x' } }, { a: 1, b: { c: 'x', d: 2 }, e: 3 }));
    assert.ok(covers({ ports: [{ port: 80 }] }, { ports: [{ port: 80, protocol: 'TCP' }] }));
  });
  it('treats empty desired lists and maps as matching an omitted field', () => {
    assert.ok(covers({ env: [], labels: {} }, {}));
  });
  it('detects changed values and list lengths', () => {
    assert.ok(!covers({ image: 'a' }, { image: 'b' }));
    assert.ok(!covers({ c: [1, 2] }, { c: [1] }));
    assert.ok(!covers({ a: { b: 1 } }, { a: 'x' }));
    assert.ok(!covers({ a: 1 }, {}));
  });
});

describe('DriftDetector', () => {
  const desired = { metadata: { name: 'd', labels: { l: '1' } }, spec: { cpu: '1000m', image: 'a' } };
  it('does not loop on values the apiserver normalises', () => {
    const d = new DriftDetector();
    const applied = { metadata: { name: 'd', uid: 'u', labels: { l: '1', other: 'x' } }, spec: { cpu: '1', image: 'a' } };
    assert.ok(d.drifted(desired, applied), 'without memory, 1000m vs 1 looks like drift');
    d.recordApplied(desired, applied);
    assert.ok(!d.drifted(desired, { ...applied, metadata: { ...applied.metadata, labels: { l: '1', other: 'changed' } } }));
  });
  it('reports a managed field changed by someone else', () => {
    const d = new DriftDetector();
    const applied = { metadata: { name: 'd', uid: 'u', labels: { l: '1' } }, spec: { cpu: '1000m', image: 'a' } };
    d.recordApplied(desired, applied);
    assert.ok(!d.drifted(desired, applied));
    assert.ok(d.drifted(desired, { ...applied, spec: { cpu: '1000m', image: 'hacked' } }));
    assert.ok(d.drifted(desired, { ...applied, metadata: { name: 'd', uid: 'u', labels: { l: '2' } } }));
  });
});
