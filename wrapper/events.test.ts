import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkEventBody, EventRequestError, eventFieldsOfProtobuf, parseEventPath } from './events.ts';

const refused = (fn: () => unknown, code: number, message: RegExp) =>
  assert.throws(fn, (err: unknown) => err instanceof EventRequestError && err.code === code && message.test(err.message));

test('event paths: exact shapes with valid names are rebuilt canonically', () => {
  assert.deepEqual(parseEventPath('POST', '/apis/events.k8s.io/v1/namespaces/default/events'), {
    method: 'POST',
    apiVersion: 'events.k8s.io/v1',
    namespace: 'default',
    name: undefined,
    path: '/apis/events.k8s.io/v1/namespaces/default/events',
  });
  const patch = parseEventPath('PATCH', '/api/v1/namespaces/kube-system/events/kube-proxy.18a1b2c3?fieldManager=kube-proxy');
  assert.equal(patch.apiVersion, 'v1');
  assert.equal(patch.name, 'kube-proxy.18a1b2c3');
  assert.equal(patch.path, '/api/v1/namespaces/kube-system/events/kube-proxy.18a1b2c3?fieldManager=kube-proxy');
  // Letters needlessly percent-encoded are still the same name; what is forwarded is plain.
  assert.equal(parseEventPath('POST', '/api/v1/namespaces/%64efault/events').path, '/api/v1/namespaces/default/events');
});

test('event paths: encoded separators, dots, bad names and foreign query parameters are refused', () => {
  refused(
    () => parseEventPath('POST', '/api/v1/namespaces/..%2F..%2Fapi%2Fv1%2Fnamespaces%2Fdefault%2Fpods%23/events'),
    400,
    /invalid namespace "\.\.\/\.\.\/api\/v1\/namespaces\/default\/pods#": must be a DNS-1123 label/,
  );
  for (const ns of ['%2E%2E', 'a%25b', 'a%3Fb', 'a%23', 'Default', 'a.b', 'x'.repeat(64), '', '%zz']) {
    refused(() => parseEventPath('POST', `/api/v1/namespaces/${ns}/events`), 400, /namespace/);
  }
  for (const name of ['..', '%2E%2E', 'a%2Fb', 'a%3Fwatch', 'A', '-a', 'a..b']) {
    refused(() => parseEventPath('PATCH', `/apis/events.k8s.io/v1/namespaces/default/events/${name}`), 400, /event name/);
  }
  refused(() => parseEventPath('POST', '/api/v1/namespaces/default/events/x'), 400, /events are written at/);
  refused(() => parseEventPath('PATCH', '/api/v1/namespaces/default/events'), 400, /events are written at/);
  refused(() => parseEventPath('POST', '/api/v1/namespaces/default/pods'), 400, /events are written at/);
  refused(() => parseEventPath('POST', '/api/v2/namespaces/default/events'), 400, /not an events path/);
  refused(() => parseEventPath('POST', '/api/v1/namespaces/default/events?watch=1'), 400, /"watch" is not accepted/);
  refused(() => parseEventPath('POST', '/api/v1/namespaces/default/events?force=true'), 400, /"force" is not accepted for POST/);
  refused(() => parseEventPath('POST', '/api/v1/namespaces/default/events?dryRun=Some'), 400, /"dryRun": must be All/);
  refused(() => parseEventPath('POST', '/api/v1/namespaces/default/events?pretty=true&pretty=false'), 400, /more than once/);
});

const post = parseEventPath('POST', '/apis/events.k8s.io/v1/namespaces/default/events');
const json = (o: unknown) => Buffer.from(JSON.stringify(o));

test('event bodies: kind, apiVersion and namespace must match the URL', () => {
  checkEventBody(post, 'application/json', json({ kind: 'Event', apiVersion: 'events.k8s.io/v1', metadata: { namespace: 'default' } }));
  checkEventBody(post, 'application/json; charset=utf-8', json({ kind: 'Event', apiVersion: 'events.k8s.io/v1', metadata: {} }));
  refused(
    () => checkEventBody(post, 'application/json', json({ kind: 'Pod', apiVersion: 'events.k8s.io/v1' })),
    400,
    /kind must be "Event"/,
  );
  refused(() => checkEventBody(post, 'application/json', json({ kind: 'Event', apiVersion: 'v1' })), 400, /apiVersion must be/);
  refused(
    () =>
      checkEventBody(
        post,
        'application/json',
        json({ kind: 'Event', apiVersion: 'events.k8s.io/v1', metadata: { namespace: 'kube-system' } }),
      ),
    400,
    /metadata.namespace "kube-system" does not match/,
  );
  refused(() => checkEventBody(post, 'application/json', Buffer.from('{')), 400, /not valid JSON/);
  refused(() => checkEventBody(post, 'text/plain', Buffer.from('x')), 415, /unsupported Content-Type "text\/plain"/);

  const patch = parseEventPath('PATCH', '/api/v1/namespaces/default/events/e1');
  checkEventBody(patch, 'application/strategic-merge-patch+json', json({ count: 2, lastTimestamp: '2026-01-01T00:00:00Z' }));
  checkEventBody(patch, 'application/merge-patch+json', json({ series: { count: 2 } }));
  refused(() => checkEventBody(patch, 'application/merge-patch+json', json({ metadata: { namespace: 'other' } })), 400, /namespace/);
  refused(() => checkEventBody(patch, 'application/merge-patch+json', json({ metadata: { name: 'e2' } })), 400, /metadata.name "e2"/);
  refused(() => checkEventBody(patch, 'application/merge-patch+json', json({ kind: 'Secret' })), 400, /kind must be "Event"/);
  checkEventBody(patch, 'application/json-patch+json', json([{ op: 'replace', path: '/count', value: 3 }]));
  refused(
    () => checkEventBody(patch, 'application/json-patch+json', json([{ op: 'replace', path: '/metadata/namespace', value: 'x' }])),
    400,
    /may not change \/metadata\/namespace/,
  );
  refused(() => checkEventBody(patch, 'application/apply-patch+yaml', Buffer.from('kind: Event')), 415, /Content-Type/);
});

// A minimal protobuf writer for the envelope the apiserver uses (length-delimited fields only).
const field = (n: number, bytes: Buffer) => {
  const len: number[] = [];
  let l = bytes.length;
  do {
    len.push((l & 0x7f) | (l > 0x7f ? 0x80 : 0));
    l >>= 7;
  } while (l > 0);
  return Buffer.concat([Buffer.from([(n << 3) | 2, ...len]), bytes]);
};
const s = (x: string) => Buffer.from(x);

test('protobuf event bodies: the envelope type and the ObjectMeta namespace are read', () => {
  const meta = Buffer.concat([field(1, s('e1')), field(3, s('default'))]);
  const event = Buffer.concat([field(1, meta), field(2, s('x'.repeat(300)))]);
  const typeMeta = Buffer.concat([field(1, s('events.k8s.io/v1')), field(2, s('Event'))]);
  const body = Buffer.concat([Buffer.from('k8s\0'), field(1, typeMeta), field(2, event)]);
  assert.deepEqual(eventFieldsOfProtobuf(body), { apiVersion: 'events.k8s.io/v1', kind: 'Event', metadata: { namespace: 'default' } });
  checkEventBody(post, 'application/vnd.kubernetes.protobuf', body);
  const elsewhere = Buffer.concat([
    Buffer.from('k8s\0'),
    field(1, typeMeta),
    field(2, field(1, Buffer.concat([field(1, s('e1')), field(3, s('kube-system'))]))),
  ]);
  refused(() => checkEventBody(post, 'application/vnd.kubernetes.protobuf', elsewhere), 400, /"kube-system" does not match/);
  refused(() => eventFieldsOfProtobuf(Buffer.from('{"kind":"Event"}')), 400, /envelope/);
  refused(() => eventFieldsOfProtobuf(Buffer.concat([Buffer.from('k8s\0'), Buffer.from([0x0a, 0x7f])])), 400, /truncated/);
});
