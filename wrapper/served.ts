// What the wrapper serves for one resource kind: the current objects under the wrapper's own
// resourceVersions, a bounded log of already-encoded watch events, and the connected watchers.
//
// The wrapper serves a derived view (filtered slices change when a node is relabelled, with no
// upstream change), so upstream resourceVersions cannot be passed through: it issues its own from
// one monotonic clock. The clock starts at (start time in ms) * 1000, or above the high-water mark
// a previous run made durable if that is higher, so a resourceVersion from a previous run is
// smaller than any of this run and is answered with 410 Expired.
//
// Objects are kept only as their encoded JSON (a few hundred bytes each instead of several KB of
// parsed objects) plus the few fields selectors read; lists and watches copy bytes, never encode.
import { SERVED_RESOURCES } from './resources.ts';

export interface RvClockOptions {
  /** The high-water mark a previous run made durable: this run starts above it. */
  floor?: number;
  /**
   * Makes a new high-water mark durable; called (synchronously, once per `block` versions) before
   * the clock issues a version above the last one reserved.
   */
  reserve?: (ceiling: number) => void;
  block?: number;
}

export class RvClock {
  readonly start: number;
  private value: number;
  private reserved = Number.POSITIVE_INFINITY;
  private readonly reserve: ((ceiling: number) => void) | undefined;
  private readonly block: number;
  constructor(nowMs: number = Date.now(), opts: RvClockOptions = {}) {
    this.start = Math.max(nowMs * 1000, (opts.floor ?? 0) + 1);
    this.value = this.start;
    this.reserve = opts.reserve;
    this.block = opts.block ?? 1_000_000;
    if (this.reserve) this.extend();
  }
  get current(): number {
    return this.value;
  }
  next(): number {
    if (this.value + 1 > this.reserved) this.extend();
    return ++this.value;
  }
  private extend(): void {
    this.reserved = this.value + this.block;
    this.reserve!(this.reserved);
  }
}

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface ServedMetrics {
  encoded(resource: string): void;
  sent(resource: string): void;
  slowWatcherClosed(resource: string): void;
  watchers(resource: string, delta: number): void;
}

export const noMetrics: ServedMetrics = {
  encoded() {},
  sent() {},
  slowWatcherClosed() {},
  watchers() {},
};

type Obj = {
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

function selectableOf(obj: Obj): Selectable {
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
const HEADS: Record<EventType, Buffer> = { ADDED: lineHead('ADDED'), MODIFIED: lineHead('MODIFIED'), DELETED: lineHead('DELETED') };
const LINE_TAIL_LENGTH = 2; // '}\n'

const encodeLine = (type: string, object: unknown) => Buffer.from(`{"type":"${type}","object":${JSON.stringify(object)}}\n`);

/**
 * One version of a served object, encoded once as the watch line that announced it:
 *   {"type":"T","object":{"kind":K,"apiVersion":A,"metadata":{"resourceVersion":"N",REST}\n
 * The object's bytes (for lists, gets and other event types) are a view into that line, and REST
 * (everything after the resourceVersion) is what two versions compare by, so a change that only
 * moves upstream's resourceVersion emits nothing.
 */
class Encoded {
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

/** The writable end of a watch response (an http.ServerResponse in production). */
export interface WatchSink {
  write(chunk: Buffer): boolean;
  end(): void;
  cork?(): void;
  uncork?(): void;
  readonly writableLength: number;
  readonly writableEnded: boolean;
}

export type Match = (obj: Selectable) => boolean;

export class Watcher {
  readonly sink: WatchSink;
  readonly match: Match | undefined;
  readonly bookmarks: boolean;
  closed = false;
  private corked = false;
  private readonly owner: ServedResource;
  private readonly uncork = () => {
    this.corked = false;
    this.sink.uncork?.();
  };
  constructor(owner: ServedResource, sink: WatchSink, match: Match | undefined, bookmarks: boolean) {
    this.owner = owner;
    this.sink = sink;
    this.match = match;
    this.bookmarks = bookmarks;
  }

  /** Writes the event as this watcher must see it given its selector (apiserver semantics). */
  deliver(ev: WatchEvent): void {
    if (!this.match) {
      this.write(ev.line(ev.type));
      return;
    }
    const now = this.match(ev.object);
    if (ev.type === 'MODIFIED') {
      const before = ev.prev !== undefined && this.match(ev.prev);
      if (now && before) this.write(ev.line('MODIFIED'));
      else if (now) this.write(ev.line('ADDED'));
      else if (before) this.write(ev.line('DELETED'));
    } else if (now) {
      this.write(ev.line(ev.type));
    }
  }

  write(line: Buffer): void {
    if (this.closed || this.sink.writableEnded) return;
    // Lines written in one tick (an upstream chunk with several events, a relabel touching many
    // slices, a replay) leave in one write system call instead of one each.
    if (!this.corked && this.sink.cork) {
      this.corked = true;
      this.sink.cork();
      process.nextTick(this.uncork);
    }
    this.sink.write(line);
    this.owner.metrics.sent(this.owner.resource);
    // A watcher that does not read must neither stall the others nor lose events silently: end
    // its watch; it re-watches from the last resourceVersion it received, which the event log
    // serves or answers with 410 so it relists.
    if (this.sink.writableLength > this.owner.maxBufferedBytes) {
      this.owner.metrics.slowWatcherClosed(this.owner.resource);
      this.owner.onSlowWatcher?.(this);
      this.close();
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.owner.detach(this);
    if (!this.sink.writableEnded) this.sink.end();
  }
}

interface Entry {
  rv: number;
  type: EventType;
  encoded: Encoded;
  selectable: Selectable;
}

export interface WatchStart {
  /** undefined: start with synthetic ADDED of the current state; a number: replay after it. */
  fromRv: number | undefined;
  initialEventsEnd: boolean;
  bookmarks: boolean;
  match: Match | undefined;
}

export interface ServedOptions {
  kind: string;
  apiVersion: string;
  logSize?: number;
  maxBufferedBytes?: number;
  metrics?: ServedMetrics;
}

export class ServedResource {
  readonly resource: string;
  readonly kind: string;
  readonly apiVersion: string;
  readonly clock: RvClock;
  readonly maxBufferedBytes: number;
  readonly metrics: ServedMetrics;
  onSlowWatcher: ((w: Watcher) => void) | undefined;
  private readonly objects = new Map<string, Entry>();
  private readonly ring: (WatchEvent | undefined)[];
  private head = 0; // index of the oldest event
  private size = 0;
  /** The log holds every event with rv > floor. */
  private floor: number;
  private readonly watchers = new Set<Watcher>();
  /** How every encoded object of this kind begins. */
  private readonly objectPrefix: string;

  constructor(resource: string, clock: RvClock, opts: ServedOptions) {
    this.resource = resource;
    this.kind = opts.kind;
    this.apiVersion = opts.apiVersion;
    this.clock = clock;
    this.ring = new Array(opts.logSize ?? 10_000);
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 16 * 1024 * 1024;
    this.metrics = opts.metrics ?? noMetrics;
    this.floor = clock.current;
    this.objectPrefix = `${JSON.stringify({ kind: this.kind, apiVersion: this.apiVersion, metadata: {} }).slice(0, -2)}`;
  }

  get count(): number {
    return this.objects.size;
  }
  get watcherCount(): number {
    return this.watchers.size;
  }

  /** The served object, parsed (tests and diagnostics; the server sends `encoded`). */
  get(key: string): Obj | undefined {
    const e = this.objects.get(key);
    return e && (JSON.parse(e.encoded.object.toString()) as Obj);
  }

  /** The served object's JSON bytes. */
  encoded(key: string): Buffer | undefined {
    return this.objects.get(key)?.encoded.object;
  }

  private encode(type: EventType, rv: number, metadata: Obj['metadata'], rest: Record<string, unknown>): Encoded {
    const { resourceVersion: _ignored, ...meta } = metadata;
    const json = JSON.stringify({ kind: this.kind, apiVersion: this.apiVersion, metadata: meta, ...rest });
    // The object starts with this.objectPrefix (key order fixed above); the resourceVersion goes
    // first in metadata.
    const after = json.slice(this.objectPrefix.length);
    const head = `{"type":"${type}","object":${this.objectPrefix}"resourceVersion":"${rv}"${after.startsWith('}') ? '' : ','}`;
    const line = Buffer.from(`${head}${after}}\n`);
    return new Encoded(line, HEADS[type].length, Buffer.byteLength(head));
  }

  private reencode(type: EventType, rv: number, from: Encoded): Encoded {
    const rest = from.line.subarray(from.restStart);
    const comma = rest[0] === 0x7d /* } */ ? '' : ',';
    const head = Buffer.from(`{"type":"${type}","object":${this.objectPrefix}"resourceVersion":"${rv}"${comma}`);
    return new Encoded(Buffer.concat([head, rest]), HEADS[type].length, head.length);
  }

  /**
   * Sets (or with undefined, deletes) the served object for a key. Emits an event only when the
   * content differs from what is served; returns the event type emitted.
   */
  apply(key: string, input: Obj | undefined): EventType | undefined {
    const old = this.objects.get(key);
    if (input === undefined) {
      if (!old) return undefined;
      this.objects.delete(key);
      const rv = this.clock.next();
      this.emit(new WatchEvent(rv, 'DELETED', this.reencode('DELETED', rv, old.encoded), old.selectable, undefined, this.onEncode));
      return 'DELETED';
    }
    const type: EventType = old ? 'MODIFIED' : 'ADDED';
    const { kind: _k, apiVersion: _a, metadata, ...rest } = input;
    // The next resourceVersion, used only if the content changed (the clock moves only then).
    const rv = this.clock.current + 1;
    const encoded = this.encode(type, rv, metadata, rest);
    if (old?.encoded.sameContent(encoded)) return undefined;
    this.clock.next();
    const selectable = selectableOf(input);
    this.objects.set(key, { rv, type, encoded, selectable });
    this.emit(new WatchEvent(rv, type, encoded, selectable, old?.selectable, this.onEncode));
    return type;
  }

  private readonly onEncode = () => this.metrics.encoded(this.resource);

  private emit(ev: WatchEvent): void {
    const cap = this.ring.length;
    if (this.size === cap) {
      this.floor = this.ring[this.head]!.rv;
      this.ring[this.head] = ev;
      this.head = (this.head + 1) % cap;
    } else {
      this.ring[(this.head + this.size) % cap] = ev;
      this.size++;
    }
    for (const w of [...this.watchers]) w.deliver(ev);
  }

  /** The current objects (JSON bytes) a selector matches, and the resourceVersion they are at. */
  list(match: Match | undefined): { resourceVersion: string; items: Buffer[] } {
    const items: Buffer[] = [];
    for (const e of this.objects.values()) if (!match || match(e.selectable)) items.push(e.encoded.object);
    return { resourceVersion: String(this.clock.current), items };
  }

  /** Why a watch from `rv` cannot be served, or undefined when it can. */
  expiredReason(rv: number): string | undefined {
    if (rv < this.clock.start) return `too old resource version: ${rv} (issued before this wrapper started at ${this.clock.start})`;
    if (rv < this.floor) return `too old resource version: ${rv} (${this.floor})`;
    if (rv > this.clock.current) return `resource version ${rv} was not issued by this wrapper (current ${this.clock.current})`;
    return undefined;
  }

  /**
   * Starts a watch: writes what the start mode requires, then registers the watcher for live
   * events. Synchronous, so no event can slip between the replay and the registration.
   */
  watch(sink: WatchSink, start: WatchStart): Watcher {
    const w = new Watcher(this, sink, start.match, start.bookmarks);
    if (start.fromRv === undefined) {
      for (const e of this.objects.values()) {
        if (start.match && !start.match(e.selectable)) continue;
        if (e.type === 'ADDED') {
          w.write(e.encoded.line);
        } else {
          this.onEncode();
          w.write(e.encoded.as('ADDED'));
        }
      }
      if (start.initialEventsEnd) w.write(this.bookmarkLine(true));
    } else {
      const cap = this.ring.length;
      // Binary search for the first logged event after fromRv.
      let lo = 0;
      let hi = this.size;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (this.ring[(this.head + mid) % cap]!.rv <= start.fromRv) lo = mid + 1;
        else hi = mid;
      }
      for (let i = lo; i < this.size && !w.closed; i++) w.deliver(this.ring[(this.head + i) % cap]!);
      if (start.initialEventsEnd) w.write(this.bookmarkLine(true));
    }
    if (!w.closed) {
      this.watchers.add(w);
      this.metrics.watchers(this.resource, 1);
    }
    return w;
  }

  detach(w: Watcher): void {
    if (this.watchers.delete(w)) this.metrics.watchers(this.resource, -1);
  }

  private bookmarkLine(initialEventsEnd: boolean): Buffer {
    const metadata: Record<string, unknown> = { resourceVersion: String(this.clock.current) };
    if (initialEventsEnd) metadata.annotations = { 'k8s.io/initial-events-end': 'true' };
    this.onEncode();
    return encodeLine('BOOKMARK', { kind: this.kind, apiVersion: this.apiVersion, metadata });
  }

  /** Sends one BOOKMARK (encoded once) to every watcher that asked for bookmarks. */
  bookmark(): void {
    let line: Buffer | undefined;
    for (const w of [...this.watchers]) {
      if (!w.bookmarks) continue;
      line ??= this.bookmarkLine(false);
      w.write(line);
    }
  }
}
