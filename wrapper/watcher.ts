// One open watch: what a client sees of a served resource's events through its selector, written
// with one system call per tick, and closed when the client stops reading.
import type { ServedResource } from './served.ts';
import type { Selectable, WatchEvent } from './watch-lines.ts';

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
