// What the wrapper serves for one resource kind: the current objects under the wrapper's own
// resourceVersions (rv-clock.ts), a bounded log of already-encoded watch events (watch-lines.ts),
// and the connected watchers (watcher.ts).
//
// Objects are kept only as their encoded JSON (a few hundred bytes each instead of several KB of
// parsed objects) plus the few fields selectors read; lists and watches copy bytes, never encode.
import type { RvClock } from './rv-clock.ts';
import { Encoded, type EventType, encodeLine, HEADS, type Obj, type Selectable, selectableOf, WatchEvent } from './watch-lines.ts';
import { type Match, Watcher, type WatchSink } from './watcher.ts';

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

  /**
   * Empties the event log; a watch from a version before now gets 410, as one older than the log
   * does. For the events made before the wrapper first answers a request (the first lists, or a
   * restored state): no client can hold one of their versions, and at 5,000 objects per resource
   * their log holds a MiB of heap for nothing until later changes push it out.
   */
  forgetEvents(): void {
    this.ring.fill(undefined);
    this.head = 0;
    this.size = 0;
    this.floor = this.clock.current;
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
