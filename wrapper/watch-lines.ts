// Watch events as the bytes they are sent as. An object is encoded once, as the watch line that
// announced it; lists, gets and every watcher copy those bytes, never encode again. Selectors read
// only the small `Selectable` kept beside the bytes.
import { SERVED_RESOURCES } from './resources.ts';

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export type Obj = {
  metadata: { resourceVersion?: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
};

/**
 * What selectors read of an object: name, namespace, labels and the selectable fields. Kept
 * instead of the parsed object, so a served object lives once, as its encoded bytes.
 */
export type Selectable = Obj;

/** Fields besides name/namespace/labels that a field selector may name, for any served kind. */
const SELECTABLE_FIELDS = [...new Set(SERVED_RESOURCES.flatMap((s) => s.extraFields))].map((f) => f.split('.'));

export function selectableOf(obj: Obj): Selectable {
  const { name, namespace, labels } = obj.metadata;
  const out: Obj = { metadata: { name, namespace, labels } };
  for (const path of SELECTABLE_FIELDS) {
    let src: unknown = obj;
    for (const p of path) src = src !== null && typeof src === 'object' ? (src as Record<string, unknown>)[p] : undefined;
    if (src === undefined) continue;
    let dst: Record<string, unknown> = out;
    for (const p of path.slice(0, -1)) dst = (dst[p] ??= {}) as Record<string, unknown>;
    dst[path.at(-1)!] = src;
  }
  return out;
}

const lineHead = (type: string) => Buffer.from(`{"type":"${type}","object":`);
export const HEADS: Record<EventType, Buffer> = { ADDED: lineHead('ADDED'), MODIFIED: lineHead('MODIFIED'), DELETED: lineHead('DELETED') };
const LINE_TAIL_LENGTH = 2; // '}\n'

export const encodeLine = (type: string, object: unknown) => Buffer.from(`{"type":"${type}","object":${JSON.stringify(object)}}\n`);

/**
 * One version of a served object, encoded once as the watch line that announced it:
 *   {"type":"T","object":{"kind":K,"apiVersion":A,"metadata":{"resourceVersion":"N",REST}\n
 * The object's bytes (for lists, gets and other event types) are a view into that line, and REST
 * (everything after the resourceVersion) is what two versions compare by, so a change that only
 * moves upstream's resourceVersion emits nothing.
 */
export class Encoded {
  readonly line: Buffer;
  readonly objectStart: number;
  readonly restStart: number;
  constructor(line: Buffer, objectStart: number, restStart: number) {
    this.line = line;
    this.objectStart = objectStart;
    this.restStart = restStart;
  }
  get object(): Buffer {
    return this.line.subarray(this.objectStart, this.line.length - LINE_TAIL_LENGTH);
  }
  sameContent(other: Encoded): boolean {
    const a = this.line.length - this.restStart;
    return (
      a === other.line.length - other.restStart && this.line.compare(other.line, other.restStart, other.line.length, this.restStart) === 0
    );
  }
  /** The same object under another event type (one copy, no JSON work). */
  as(type: EventType): Buffer {
    return Buffer.concat([HEADS[type], this.line.subarray(this.objectStart)]);
  }
}

/** One change, encoded once per wire type however many watchers receive it. */
export class WatchEvent {
  readonly rv: number;
  readonly type: EventType;
  readonly object: Selectable;
  /** The previous served object (MODIFIED only): lets selector watchers see objects leave. */
  readonly prev: Selectable | undefined;
  private readonly encoded: Encoded;
  private delivered = false;
  /** Other wire types of this event, for selector watchers (objects entering or leaving). */
  private others: Map<EventType, Buffer> | undefined;
  private readonly onEncode: () => void;
  constructor(rv: number, type: EventType, encoded: Encoded, object: Selectable, prev: Selectable | undefined, onEncode: () => void) {
    this.rv = rv;
    this.type = type;
    this.encoded = encoded;
    this.object = object;
    this.prev = prev;
    this.onEncode = onEncode;
  }
  line(type: EventType): Buffer {
    if (type === this.type) {
      if (!this.delivered) {
        this.delivered = true;
        this.onEncode();
      }
      return this.encoded.line;
    }
    this.others ??= new Map();
    let b = this.others.get(type);
    if (!b) {
      b = this.encoded.as(type);
      this.others.set(type, b);
      this.onEncode();
    }
    return b;
  }
}
