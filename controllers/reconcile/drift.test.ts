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
  it('learns what the apiserver made of a write answered with metadata only from the watch event of that version', () => {
    const d = new DriftDetector();
    const answer = { kind: 'PartialObjectMetadata', metadata: { name: 'd', uid: 'u', resourceVersion: '7', labels: { l: '1' } } };
    const stored = (rv: string, labels = { l: '1' }) => ({
      metadata: { name: 'd', uid: 'u', resourceVersion: rv, labels },
      spec: { cpu: '1', image: 'a' },
    });
    d.recordWritten(desired, answer);
    d.seen(stored('6'));
    assert.ok(d.drifted(desired, stored('8')), 'not learnt from another version: 1000m vs 1 looks like drift');
    d.seen(stored('7'));
    assert.ok(!d.drifted(desired, stored('8', { l: '1' })), 'a later version (status changed) with the normalised value is not drift');
    assert.ok(d.drifted(desired, { ...stored('9'), spec: { cpu: '1', image: 'hacked' } }), 'a change by someone else still is');
  });
  it('reports a managed field changed by someone else', () => {
    const d = new DriftDetector();
    const applied = { metadata: { name: 'd', uid: 'u', labels: { l: '1' } }, spec: { cpu: '1000m', image: 'a' } };
    d.recordApplied(desired, applied);
    assert.ok(!d.drifted(desired, applied));
    assert.ok(d.drifted(desired, { ...applied, spec: { cpu: '1000m', image: 'hacked' } }));
    assert.ok(d.drifted(desired, { ...applied, metadata: { name: 'd', uid: 'u', labels: { l: '2' } } }));
  });
  it('compares a version of an object with a render once', () => {
    const d = new DriftDetector();
    const hashed = (hash: string) => ({
      ...desired,
      metadata: { ...desired.metadata, annotations: { 'servicegroup.io/render-hash': hash } },
    });
    const live = (rv: string, image: string) => ({
      metadata: { name: 'd', uid: 'u', resourceVersion: rv, labels: { l: '1' }, annotations: { 'servicegroup.io/render-hash': 'h1' } },
      spec: { cpu: '1000m', image },
    });
    assert.ok(!d.drifted(hashed('h1'), live('5', 'a')));
    // Version 5 was compared with render h1: the answer stands without looking at the fields again.
    assert.ok(!d.drifted(hashed('h1'), live('5', 'not looked at')));
    assert.ok(d.drifted(hashed('h1'), live('6', 'hacked')), 'a new version is compared');
    assert.ok(d.drifted(hashed('h2'), live('5', 'hacked')), 'so is the same version against another render');
    d.forget('u');
    assert.ok(d.drifted(hashed('h1'), live('5', 'hacked')), 'forgotten with the object');
  });
  it('knows a unit matches its render without rendering it, for the same grid generation, name and live version only', () => {
    const d = new DriftDetector();
    const grid = (generation: number) => ({ metadata: { name: 'web', namespace: 'ns', uid: 'g1', generation } });
    const render = (hash: string) => ({
      metadata: { name: 'web-a', labels: { l: '1' }, annotations: { 'servicegroup.io/render-hash': hash } },
      spec: { image: 'a' },
    });
    const live = (rv: string, hash = 'h1') => ({
      metadata: { name: 'web-a', uid: 'o1', resourceVersion: rv, labels: { l: '1' }, annotations: { 'servicegroup.io/render-hash': hash } },
      spec: { image: 'a' },
    });
    assert.ok(!d.matchesLastRender(grid(1), 'a', 'web-a', live('5')), 'never rendered');
    d.rendered(grid(1), 'a', render('h1'));
    assert.ok(!d.matchesLastRender(grid(1), 'a', 'web-a', live('5')), 'rendered, but this version was never compared');
    d.recordApplied(render('h1'), live('5'));
    assert.ok(d.matchesLastRender(grid(1), 'a', 'web-a', live('5')), 'what our write returned matches the render');
    assert.ok(!d.matchesLastRender(grid(1), 'a', 'web-a', live('6')), 'a newer version (someone changed it) is compared again');
    assert.ok(!d.matchesLastRender(grid(2), 'a', 'web-a', live('5')), 'a new generation of the grid renders again');
    assert.ok(!d.matchesLastRender(grid(1), 'a', 'web-a-other', live('5')), 'another name (the unit set changed) renders again');
    assert.ok(!d.matchesLastRender(grid(1), 'b', 'web-a', live('5')), 'another unit');
    assert.ok(!d.drifted(render('h1'), live('7')), 'version 7 compared: not drifted');
    assert.ok(d.matchesLastRender(grid(1), 'a', 'web-a', live('7')), 'a compared version counts like a written one');
    d.rendered(grid(1), 'a', render('h2'));
    assert.ok(!d.matchesLastRender(grid(1), 'a', 'web-a', live('7')), 'the live object carries another render');
    d.rendered(grid(1), 'a', render('h1'));
    d.keepUnits('g1', new Set(['b']));
    assert.ok(!d.matchesLastRender(grid(1), 'a', 'web-a', live('7')), 'a unit the grid no longer has is dropped');
    d.rendered(grid(1), 'a', render('h1'));
    d.forgetGrid('g1');
    assert.ok(!d.matchesLastRender(grid(1), 'a', 'web-a', live('7')), 'forgotten with the grid');
  });
});
