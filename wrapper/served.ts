// What the wrapper serves for one resource kind: the current objects under the wrapper's own
// resourceVersions, a bounded log of already-encoded watch events, and the connected watchers.
//
// The wrapper serves a derived view (filtered slices change when a node is relabelled, with no
// upstream change), so upstream resourceVersions cannot be passed through: it issues its own from
// one monotonic clock. The clock starts at (start time in ms) * 1000, so a resourceVersion from a
// previous run of the wrapper is smaller than any of this run and is answered with 410 Expired.

export class RvClock {
  readonly start: number;
  private value: number;
  constructor(nowMs: number = Date.now()) {
    this.start = nowMs * 1000;
    this.value = this.start;
  }
  get current(): number {
    return this.value;
  }
  next(): number {
    return ++this.value;
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

const encodeLine = (type: string, object: unknown) => Buffer.from(`{"type":"${type}","object":${JSON.stringify(object)}}\n`);

/** One change, encoded lazily once per wire type however many watchers receive it. */
export class WatchEvent {
  readonly rv: number;
  readonly type: EventType;
  readonly object: Obj;
  /** The previous served object (MODIFIED only): lets selector watchers see objects leave. */
  readonly prev: Obj | undefined;
  private readonly lines = new Map<string, Buffer>();
  private readonly onEncode: () => void;
  constructor(rv: number, type: EventType, object: Obj, prev: Obj | undefined, onEncode: () => void) {
    this.rv = rv;
    this.type = type;
    this.object = object;
    this.prev = prev;
    this.onEncode = onEncode;
  }
  line(type: EventType): Buffer {
    let b = this.lines.get(type);
    if (!b) {
      b = encodeLine(type, this.object);
      this.lines.set(type, b);
      this.onEncode();
    }
    return b;
  }
}

/** The writable end of a watch response (an http.ServerResponse in production). */
export interface WatchSink {
  write(chunk: Buffer): boolean;
  end(): void;
  readonly writableLength: number;
  readonly writableEnded: boolean;
}

export type Match = (obj: Obj) => boolean;

export class Watcher {
  readonly sink: WatchSink;
  readonly match: Match | undefined;
  readonly bookmarks: boolean;
  closed = false;
  private readonly owner: ServedResource;
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
  object: Obj;
  fingerprint: string;
  added?: Buffer;
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

/** Drops the fields the wrapper rewrites, so unchanged content compares equal. */
function fingerprintOf(obj: Obj): string {
  const { resourceVersion: _ignored, ...meta } = obj.metadata;
  return JSON.stringify({ ...obj, metadata: meta });
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

  constructor(resource: string, clock: RvClock, opts: ServedOptions) {
    this.resource = resource;
    this.kind = opts.kind;
    this.apiVersion = opts.apiVersion;
    this.clock = clock;
    this.ring = new Array(opts.logSize ?? 10_000);
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 16 * 1024 * 1024;
    this.metrics = opts.metrics ?? noMetrics;
    this.floor = clock.current;
  }

  get count(): number {
    return this.objects.size;
  }
  get watcherCount(): number {
    return this.watchers.size;
  }

  get(key: string): Obj | undefined {
    return this.objects.get(key)?.object;
  }

  *values(): Iterable<Obj> {
    for (const e of this.objects.values()) yield e.object;
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
      const gone = { ...old.object, metadata: { ...old.object.metadata, resourceVersion: String(rv) } };
      this.emit(new WatchEvent(rv, 'DELETED', gone, undefined, this.onEncode));
      return 'DELETED';
    }
    const withKind = { ...input, kind: this.kind, apiVersion: this.apiVersion };
    const fingerprint = fingerprintOf(withKind);
    if (old && old.fingerprint === fingerprint) return undefined;
    const rv = this.clock.next();
    const object = { ...withKind, metadata: { ...withKind.metadata, resourceVersion: String(rv) } };
    this.objects.set(key, { object, fingerprint });
    const type: EventType = old ? 'MODIFIED' : 'ADDED';
    this.emit(new WatchEvent(rv, type, object, old?.object, this.onEncode));
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

  list(match: Match | undefined): { resourceVersion: string; items: Obj[] } {
    const items: Obj[] = [];
    for (const e of this.objects.values()) if (!match || match(e.object)) items.push(e.object);
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
        if (start.match && !start.match(e.object)) continue;
        if (!e.added) {
          e.added = encodeLine('ADDED', e.object);
          this.onEncode();
        }
        w.write(e.added);
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

  closeAll(): void {
    for (const w of [...this.watchers]) w.close();
  }
}
