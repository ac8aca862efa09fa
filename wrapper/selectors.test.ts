import assert from 'node:assert/strict';
import { test } from 'node:test';
import { matchesFields, matchesLabels, parseFieldSelector, parseLabelSelector, SelectorError } from './selectors.ts';

const sel = (s: string, labels: Record<string, string> | undefined) => matchesLabels(parseLabelSelector(s), labels);

test('label selector operators', () => {
  const l = { app: 'web', tier: 'front', n: '7' };
  assert.equal(sel('', l), true);
  assert.equal(sel('app=web', l), true);
  assert.equal(sel('app==web', l), true);
  assert.equal(sel('app!=web', l), false);
  assert.equal(sel('app!=db', l), true);
  assert.equal(sel('missing!=x', l), true, '!= matches when the label is absent');
  assert.equal(sel('app in (db, web)', l), true);
  assert.equal(sel('app in (db)', l), false);
  assert.equal(sel('app notin (db,web)', l), false);
  assert.equal(sel('missing notin (a)', l), true);
  assert.equal(sel('tier', l), true);
  assert.equal(sel('!tier', l), false);
  assert.equal(sel('n>5,n<8', l), true);
  assert.equal(sel('app=web,!missing,tier in (front)', l), true);
  assert.equal(sel('app=web,tier=back', l), false);
  assert.equal(sel('app', undefined), false);
  assert.equal(sel('!app', undefined), true);
});

test("kube-proxy's selector", () => {
  const s = '!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name';
  assert.equal(sel(s, { 'kubernetes.io/service-name': 'x' }), true);
  assert.equal(sel(s, { 'service.kubernetes.io/headless': '' }), false);
});

test('label selector errors are precise', () => {
  assert.throws(() => parseLabelSelector('app in db'), /expected '\(' after set operator, found 'db' at position 7/);
  assert.throws(() => parseLabelSelector('app=web,'), /expected a requirement after ","/);
  assert.throws(() => parseLabelSelector('a b'), /expected an operator/);
  assert.throws(() => parseLabelSelector('app=we b'), SelectorError);
  assert.throws(() => parseLabelSelector('-bad=x'), /invalid label key "-bad"/);
  assert.throws(() => parseLabelSelector('a=$'), /unexpected character '\$' at position 2/);
  assert.throws(() => parseLabelSelector('a in ()'), /at least one value/);
});

test('field selectors', () => {
  const svc = { metadata: { name: 'a', namespace: 'ns' }, spec: { clusterIP: 'None' } };
  const fields = ['metadata.name', 'metadata.namespace', 'spec.clusterIP'];
  assert.equal(matchesFields(parseFieldSelector('spec.clusterIP!=None', fields), svc), false);
  assert.equal(matchesFields(parseFieldSelector('metadata.name=a,metadata.namespace==ns', fields), svc), true);
  assert.equal(matchesFields(parseFieldSelector('metadata.name=b', fields), svc), false);
  assert.equal(matchesFields(parseFieldSelector('', fields), svc), true);
  assert.throws(() => parseFieldSelector('spec.type=x', fields), /field label not supported: spec.type/);
  assert.throws(() => parseFieldSelector('metadata.name', fields), /has no operator/);
});
