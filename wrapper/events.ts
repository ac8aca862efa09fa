// Event writes are the only requests the wrapper forwards with its own credentials, so they are
// checked before they leave: the path must be exactly an events collection or one event of a
// valid namespace (percent-encoding cannot smuggle in another path, since the apiserver would
// decode it), the query holds only write options, and the body is an Event of that namespace.
// What is forwarded is rebuilt from the checked parts, never the caller's raw URL.
import type { Readable } from 'node:stream';
import { isDnsLabel, isDnsSubdomain } from '../kube/names.ts';

export class EventRequestError extends Error {
  readonly code: number;
  readonly reason: string;
  constructor(code: number, reason: string, message: string) {
    super(message);
    this.code = code;
    this.reason = reason;
  }
}

const badRequest = (message: string) => new EventRequestError(400, 'BadRequest', message);

export type EventMethod = 'POST' | 'PATCH';

/** The group versions whose events the wrapper forwards, by URL prefix. */
export const EVENT_API_PREFIXES = { '/api/v1': 'v1', '/apis/events.k8s.io/v1': 'events.k8s.io/v1' } as const;

export const MAX_EVENT_BODY_BYTES = 1024 * 1024;

export interface EventWrite {
  method: EventMethod;
  apiVersion: string;
  namespace: string;
  /** Set for PATCH (one event), unset for POST (the collection). */
  name: string | undefined;
  /** What is sent upstream: the canonical path and the checked query. */
  path: string;
}

/** Write options the apiserver takes on create/patch, with the values it accepts. */
const QUERY_PARAMS: Record<string, { methods: EventMethod[]; valid: (v: string) => boolean; expected: string }> = {
  dryRun: { methods: ['POST', 'PATCH'], valid: (v) => v === 'All', expected: 'All' },
  fieldManager: { methods: ['POST', 'PATCH'], valid: (v) => v.length > 0 && v.length <= 128, expected: '1-128 characters' },
  fieldValidation: {
    methods: ['POST', 'PATCH'],
    valid: (v) => ['Ignore', 'Warn', 'Strict'].includes(v),
    expected: 'Ignore, Warn or Strict',
  },
  pretty: { methods: ['POST', 'PATCH'], valid: (v) => v === 'true' || v === 'false', expected: 'true or false' },
  force: { methods: ['PATCH'], valid: (v) => v === 'true' || v === 'false', expected: 'true or false' },
};

function decodeSegment(segment: string, what: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw badRequest(`invalid ${what} ${JSON.stringify(segment)}: malformed percent-encoding`);
  }
}

/**
 * Checks an event write's URL (as received, still percent-encoded): `/api/v1/namespaces/{ns}/events`
 * or `/apis/events.k8s.io/v1/namespaces/{ns}/events` for POST, the same plus `/{name}` for PATCH.
 * The namespace must decode to a DNS-1123 label and the name to a DNS-1123 subdomain, which rules
 * out `/`, `%`, `#`, `?` and `..` in either.
 */
export function parseEventPath(method: EventMethod, rawUrl: string): EventWrite {
  const q = rawUrl.indexOf('?');
  const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const prefix = (Object.keys(EVENT_API_PREFIXES) as (keyof typeof EVENT_API_PREFIXES)[]).find((p) =>
    rawPath.startsWith(`${p}/namespaces/`),
  );
  if (!prefix) throw badRequest(`${rawPath} is not an events path`);
  const segments = rawPath.slice(`${prefix}/namespaces/`.length).split('/');
  const expected = method === 'POST' ? 2 : 3;
  if (segments.length !== expected || segments[1] !== 'events') {
    throw badRequest(
      `${method} ${rawPath}: events are written at ${prefix}/namespaces/{namespace}/events${method === 'PATCH' ? '/{name}' : ''}`,
    );
  }
  const namespace = decodeSegment(segments[0]!, 'namespace');
  if (!isDnsLabel(namespace)) {
    throw badRequest(
      `invalid namespace ${JSON.stringify(namespace)}: must be a DNS-1123 label (at most 63 lower-case alphanumerics or '-', starting and ending with an alphanumeric)`,
    );
  }
  let name: string | undefined;
  if (method === 'PATCH') {
    name = decodeSegment(segments[2]!, 'event name');
    if (!isDnsSubdomain(name)) {
      throw badRequest(
        `invalid event name ${JSON.stringify(name)}: must be a DNS-1123 subdomain (at most 253 lower-case alphanumerics, '-' or '.', each dot-separated part starting and ending with an alphanumeric)`,
      );
    }
  }
  const query = new URLSearchParams(q < 0 ? '' : rawUrl.slice(q + 1));
  const kept = new URLSearchParams();
  for (const [key, value] of query) {
    const param = QUERY_PARAMS[key];
    if (!param?.methods.includes(method)) throw badRequest(`query parameter "${key}" is not accepted for ${method} of events`);
    if (kept.has(key)) throw badRequest(`query parameter "${key}" given more than once`);
    if (!param.valid(value))
      throw badRequest(`invalid value ${JSON.stringify(value)} for query parameter "${key}": must be ${param.expected}`);
    kept.set(key, value);
  }
  const search = kept.size ? `?${kept}` : '';
  const path = `${prefix}/namespaces/${namespace}/events${name === undefined ? '' : `/${name}`}${search}`;
  return { method, apiVersion: EVENT_API_PREFIXES[prefix], namespace, name, path };
}

/** Reads a request body of at most `limit` bytes. */
export async function readBody(stream: Readable, limit = MAX_EVENT_BODY_BYTES): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new EventRequestError(413, 'RequestEntityTooLarge', `an event write body may be at most ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

const PROTOBUF = 'application/vnd.kubernetes.protobuf';
const JSON_TYPE = 'application/json';
const MERGE_PATCH_TYPES = ['application/merge-patch+json', 'application/strategic-merge-patch+json'];
const JSON_PATCH = 'application/json-patch+json';

/** Checks that the body is an Event for the write's group version and namespace (and name, for PATCH). */
export function checkEventBody(write: EventWrite, contentTypeHeader: string | undefined, body: Buffer): void {
  const contentType = (contentTypeHeader ?? '').split(';')[0]!.trim().toLowerCase();
  if (write.method === 'POST') {
    if (contentType === JSON_TYPE) checkEventFields(write, parseJson(body), { complete: true });
    else if (contentType === PROTOBUF) checkEventFields(write, eventFieldsOfProtobuf(body), { complete: true });
    else throw unsupported(write, contentType, [JSON_TYPE, PROTOBUF]);
    return;
  }
  if (MERGE_PATCH_TYPES.includes(contentType)) {
    checkEventFields(write, parseJson(body), { complete: false });
  } else if (contentType === JSON_PATCH) {
    const ops = parseJson(body);
    if (!Array.isArray(ops)) throw badRequest('a JSON patch must be an array of operations');
    for (const op of ops as { path?: unknown }[]) {
      const path = typeof op?.path === 'string' ? op.path : '';
      if (['', '/kind', '/apiVersion', '/metadata', '/metadata/namespace', '/metadata/name'].includes(path)) {
        throw badRequest(`a patch of an event may not change ${path || 'the whole object'}`);
      }
    }
  } else {
    throw unsupported(write, contentType, [...MERGE_PATCH_TYPES, JSON_PATCH]);
  }
}

const unsupported = (write: EventWrite, contentType: string, accepted: string[]) =>
  new EventRequestError(
    415,
    'UnsupportedMediaType',
    `${write.method} of events: unsupported Content-Type ${JSON.stringify(contentType)}; accepted: ${accepted.join(', ')}`,
  );

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw badRequest(`the body is not valid JSON: ${(err as Error).message}`);
  }
}

interface EventFields {
  apiVersion?: unknown;
  kind?: unknown;
  metadata?: { namespace?: unknown; name?: unknown };
}

function checkEventFields(write: EventWrite, value: unknown, opts: { complete: boolean }): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw badRequest('the body must be a JSON object');
  const o = value as EventFields;
  const where = `${write.method} to ${write.apiVersion} events in namespace "${write.namespace}"`;
  if ((opts.complete || 'kind' in o) && o.kind !== 'Event')
    throw badRequest(`${where}: kind must be "Event", not ${JSON.stringify(o.kind)}`);
  if ((opts.complete || 'apiVersion' in o) && o.apiVersion !== write.apiVersion) {
    throw badRequest(`${where}: apiVersion must be "${write.apiVersion}", not ${JSON.stringify(o.apiVersion)}`);
  }
  const metadata = o.metadata;
  if (metadata === undefined) return;
  if (metadata === null || typeof metadata !== 'object') throw badRequest(`${where}: metadata must be an object`);
  const ns = metadata.namespace;
  // Create takes an unset namespace from the URL; a patch leaves an absent one alone.
  const nsOk = 'namespace' in metadata ? ns === write.namespace || (opts.complete && (ns === '' || ns === undefined)) : true;
  if (!nsOk) throw badRequest(`${where}: metadata.namespace ${JSON.stringify(ns)} does not match the namespace of the URL`);
  if (write.name !== undefined && 'name' in metadata && metadata.name !== write.name) {
    throw badRequest(`${where}: metadata.name ${JSON.stringify(metadata.name)} does not match the name "${write.name}" of the URL`);
  }
}

// Kubernetes' protobuf envelope: the bytes "k8s\0", then a runtime.Unknown message
// { 1: TypeMeta { 1: apiVersion, 2: kind }, 2: raw object }. Both Event kinds have their
// ObjectMeta as field 1, whose field 3 is the namespace. Only those fields are read.
const PROTOBUF_MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

/** The length-delimited fields of one protobuf message, by field number (the last one wins). */
function protobufFields(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let i = 0;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; shift < 49; shift += 7) {
      if (i >= buf.length) throw badRequest('the protobuf body is truncated');
      const b = buf[i++]!;
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
    throw badRequest('the protobuf body has an over-long varint');
  };
  while (i < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) varint();
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const len = varint();
      if (i + len > buf.length) throw badRequest('the protobuf body is truncated');
      out.set(field, buf.subarray(i, i + len));
      i += len;
    } else throw badRequest(`the protobuf body has an unsupported wire type ${wire}`);
    if (i > buf.length) throw badRequest('the protobuf body is truncated');
  }
  return out;
}

/** apiVersion, kind and metadata.namespace of a protobuf-encoded object. */
export function eventFieldsOfProtobuf(body: Buffer): EventFields {
  if (!body.subarray(0, PROTOBUF_MAGIC.length).equals(PROTOBUF_MAGIC)) throw badRequest('the protobuf body lacks the Kubernetes envelope');
  const unknown = protobufFields(body.subarray(PROTOBUF_MAGIC.length));
  const typeMeta = protobufFields(unknown.get(1) ?? Buffer.alloc(0));
  const object = protobufFields(unknown.get(2) ?? Buffer.alloc(0));
  const objectMeta = protobufFields(object.get(1) ?? Buffer.alloc(0));
  return {
    apiVersion: typeMeta.get(1)?.toString('utf8'),
    kind: typeMeta.get(2)?.toString('utf8'),
    metadata: { namespace: objectMeta.get(3)?.toString('utf8') ?? '' },
  };
}
